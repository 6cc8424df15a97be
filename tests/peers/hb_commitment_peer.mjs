#!/usr/bin/env node
// A JS producer of a HyperBEAM-style committed body message.
//
//   node tests/peers/hb_commitment_peer.mjs OUT_DIR
//     Generates an Arweave JWK (arweave-js); takes the message {action, target, data} as a standalone
//     httpsig message the way HyperBEAM (b2743e4a) encodes one (small values as fields, `data` as the
//     body with `inline-body-key: data` and its `content-digest`); signs every field with
//     `http-message-signatures` (the RFC 9421 library aoconnect uses; rsa-pss-sha512 by node:crypto,
//     keyid = base64url modulus); then sends it in HyperBEAM's multipart layout: an `inline` part
//     with the fields, `body/data`, and a `body/commitments/<id>` part holding the signature.
//     Writes OUT_DIR/committed.json: {address, headers: [[name, value]...], body_b64}.
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import Arweave from "arweave";
import { httpbis } from "http-message-signatures";

const PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc";
const CRLF = "\r\n";
const sha256 = (data) => crypto.createHash("sha256").update(data).digest();

async function main(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const arweave = Arweave.init({});
  const jwk = await arweave.wallets.generate();
  const address = await arweave.wallets.jwkToAddress(jwk);
  const privateKey = crypto.createPrivateKey({ key: jwk, format: "jwk" });
  const data = "local x = 1\nreturn x + 41";
  const fields = {
    action: "Eval",
    target: PID,
    "inline-body-key": "data",
    "content-digest": `sha-256=:${sha256(data).toString("base64")}:`,
  };
  const label = "http-sig-" + Buffer.from(address, "base64url").subarray(1, 9).toString("hex");
  const signed = await httpbis.signMessage({
    key: {
      id: jwk.n,
      alg: "rsa-pss-sha512",
      sign: async (base) => crypto.sign("sha512", base, {
        key: privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }),
    },
    name: label,
    params: ["alg", "keyid"],
    fields: Object.keys(fields).sort(),
  }, { method: "POST", url: "http://x/", headers: { ...fields } });
  const signature = signed.headers["Signature"];
  const signatureInput = signed.headers["Signature-Input"];
  const sigBytes = Buffer.from(/=:([^:]*):/.exec(signature)[1], "base64");
  const id = sha256(sigBytes).toString("base64url");
  const parts = [
    ["content-disposition: inline", `action: ${fields.action}`, `target: ${fields.target}`].join(CRLF),
    `content-disposition: form-data;name="body/data"${CRLF}${CRLF}${data}`,
    [`content-disposition: form-data;name="body/commitments/${id}"`, "alg: rsa-pss-sha512",
     "commitment-device: httpsig@1.0", `committer: ${address}`, `signature: ${signature}`,
     `signature-input: ${signatureInput}`].join(CRLF),
  ];
  const boundary = sha256(parts.join(CRLF)).toString("base64url");
  const body = Buffer.from(parts.map((p) => `--${boundary}${CRLF}${p}${CRLF}`).join("") + `--${boundary}--`);
  const headers = [
    ["body-keys", '"body"'],
    ["content-type", `multipart/form-data; boundary="${boundary}"`],
    ["content-digest", `sha-256=:${sha256(body).toString("base64")}:`],
  ];
  fs.writeFileSync(path.join(outDir, "committed.json"),
                   JSON.stringify({ address, headers, body_b64: body.toString("base64") }));
}

await main(process.argv[2]);
