#!/usr/bin/env node
// Interop peer: the unmodified npm packages a front end uses (@permaweb/aoconnect 0.0.98 in legacy
// mode, arweave 1.15.7) drive an aonode as MU, CU, SU and gateway at once.
//
// Usage: node tests/peers/aoconnect_flow.mjs BASE_URL MODULE_ID
// Prints one JSON object on stdout (the Python test asserts on it); exits 1 with {error} otherwise.
//
// Flow: generate a wallet -> read the node's address (scheduler) -> spawn an AOS process -> Eval a
// small token that patches its balances into the readable cache -> Transfer -> result / results /
// dryrun -> read the patched balances with a plain GET on the HyperBEAM path.
import Arweave from "arweave";
import { connect, createDataItemSigner } from "@permaweb/aoconnect";
import { RECIPIENT, TOKEN_LUA, outputText, tagsOf } from "./ao_token.mjs";

const [BASE, MODULE] = process.argv.slice(2);

async function main() {
  const arweave = Arweave.init({});
  const wallet = await arweave.wallets.generate();
  const owner = await arweave.wallets.jwkToAddress(wallet);
  const signer = createDataItemSigner(wallet);

  const info = await fetch(`${BASE}/~meta@1.0/info`, { headers: { accept: "application/json" } })
    .then((r) => r.json());
  const scheduler = info.address;

  const ao = connect({ MU_URL: BASE, CU_URL: BASE, GATEWAY_URL: BASE });

  const pid = await ao.spawn({ module: MODULE, scheduler, signer, tags: [{ name: "Name", value: "aoconnect-interop" }] });

  const evalId = await ao.message({ process: pid, signer, tags: [{ name: "Action", value: "Eval" }], data: TOKEN_LUA });
  const evalResult = await ao.result({ process: pid, message: evalId });

  const transferId = await ao.message({
    process: pid, signer,
    tags: [{ name: "Action", value: "Transfer" }, { name: "Recipient", value: RECIPIENT }, { name: "Quantity", value: "250" }],
  });
  const transferResult = await ao.result({ process: pid, message: transferId });

  const page = await ao.results({ process: pid, sort: "ASC", limit: 25 });
  const newest = await ao.results({ process: pid, sort: "DESC", limit: 1 });

  const dry = await ao.dryrun({ process: pid, Owner: owner, tags: [{ name: "Action", value: "Balance" }, { name: "Target", value: owner }] });

  const balancesUrl = `${BASE}/${pid}~process@1.0/now/cache/balances`;
  const balances = await fetch(balancesUrl, { headers: { accept: "application/json" } }).then((r) => r.json());
  const recipientBalance = await fetch(`${balancesUrl}/${RECIPIENT}`).then((r) => r.text());

  const after = await ao.results({ process: pid, sort: "DESC", limit: 1 });

  console.log(JSON.stringify({
    pid, owner, scheduler, evalId, transferId,
    evalOutput: outputText(evalResult),
    evalError: evalResult.Error ?? null,
    transferMessages: transferResult.Messages.map(tagsOf),
    transferTargets: transferResult.Messages.map((m) => m.Target),
    resultsCursors: page.edges.map((e) => e.cursor),
    resultsOutputs: page.edges.map((e) => outputText(e.node)),
    newestCursor: newest.edges[0]?.cursor ?? null,
    newestCursorAfterDryrun: after.edges[0]?.cursor ?? null,
    dryrunMessages: dry.Messages.map(tagsOf),
    dryrunError: dry.Error ?? null,
    balances,
    recipientBalance,
  }));
}

main().catch((err) => {
  console.log(JSON.stringify({ error: String(err?.stack ?? err) }));
  process.exit(1);
});
