#!/usr/bin/env node
// Interop peer: the unmodified npm @permaweb/aoconnect 0.0.98 in MODE 'mainnet' (HyperBEAM's protocol:
// /push, ANS-104 bodies with codec-device ans104@1.0, compute/results=<slot>, as=execution dry-runs,
// request() signed with httpsig) against an aonode.
//
// Usage: node tests/peers/aoconnect_mainnet.mjs BASE_URL MODULE_ID
// Prints one JSON object on stdout; exits 1 with {error} otherwise. `responses` are raw answers
// ({url, status, headers, body_b64}) the Python test verifies as signed by the node.
import Arweave from "arweave";
import { connect, createSigner } from "@permaweb/aoconnect";
import { RECIPIENT, TOKEN_LUA, outputText, tagsOf } from "./ao_token.mjs";

const [BASE, MODULE] = process.argv.slice(2);

async function capture(response) {
  const body = Buffer.from(await response.clone().arrayBuffer());
  return { url: response.url, status: response.status, headers: [...response.headers.entries()],
           body_b64: body.toString("base64") };
}

async function main() {
  const arweave = Arweave.init({});
  const jwk = await arweave.wallets.generate();
  const owner = await arweave.wallets.jwkToAddress(jwk);
  const ao = connect({ MODE: "mainnet", URL: BASE, signer: createSigner(jwk) });
  const responses = {};

  const addressResponse = await fetch(`${BASE}/~meta@1.0/info/address`);
  responses.address = await capture(addressResponse);
  const scheduler = await addressResponse.text();

  const pid = await ao.spawn({ module: MODULE, tags: [{ name: "Name", value: "aoconnect-mainnet" }] });
  const evalSlot = await ao.message({ process: pid, tags: [{ name: "Action", value: "Eval" }], data: TOKEN_LUA });
  const evalResult = await ao.result({ process: pid, slot: evalSlot });

  const transferSlot = await ao.message({
    process: pid,
    tags: [{ name: "Action", value: "Transfer" }, { name: "Recipient", value: RECIPIENT }, { name: "Quantity", value: "250" }],
  });
  const transferResult = await ao.result({ process: pid, slot: transferSlot });

  const dry = await ao.dryrun({ process: pid, tags: [{ name: "Action", value: "Balance" }, { name: "Target", value: owner }] });
  const page = await ao.results({ process: pid });

  // request() with httpsig: fields travel as signed headers (one-line data: 0.0.98 sends no body).
  const pushed = await ao.request({
    path: `/${pid}~process@1.0/push`, method: "POST", "signing-format": "httpsig", target: pid,
    Action: "Eval", data: "Send({ device = 'patch@1.0', cache = { marker = 'httpsig' } })",
  });
  responses.push = await capture(pushed);
  const pushedJson = await pushed.json();

  const balancesResponse = await fetch(`${BASE}/${pid}~process@1.0/now/cache/balances/${RECIPIENT}`);
  responses.balance = await capture(balancesResponse);
  const recipientBalance = await balancesResponse.text();
  const marker = await fetch(`${BASE}/${pid}~process@1.0/now/cache/marker`).then((r) => r.text());
  const slotText = await fetch(`${BASE}/${pid}/slot/current`).then((r) => r.text());

  console.log(JSON.stringify({
    pid, owner, scheduler, evalSlot, transferSlot,
    evalOutput: outputText(evalResult), evalError: evalResult.Error ?? null,
    transferMessages: transferResult.Messages.map(tagsOf),
    dryrunMessages: dry.Messages.map(tagsOf),
    resultsCursor: page.edges[0]?.cursor ?? null,
    pushedSlot: pushedJson.slot ?? null,
    recipientBalance, marker, slotText,
    responses,
  }));
}

main().catch((err) => {
  console.log(JSON.stringify({ error: String(err?.stack ?? err) }));
  process.exit(1);
});
