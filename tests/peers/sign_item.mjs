#!/usr/bin/env node
// Reference peer for ANS-104: signs and verifies data items with the unmodified npm packages our
// users run (aoconnect 0.0.98's createDataItemSigner, @dha-team/arbundles, arweave-js), so the
// Python implementation can be checked against them byte for byte.
//
// Usage:
//   node tests/peers/sign_item.mjs sign OUT_DIR
//     Generates an Arweave RSA-4096 JWK (arweave-js) and an ed25519 key, writes them to
//     OUT_DIR/rsa.jwk.json and OUT_DIR/ed25519.jwk.json, signs the CASES below with each signer and
//     writes OUT_DIR/<case>-<signer>.item plus OUT_DIR/manifest.json:
//       [{file, signer, case, id, address, signature_type, tags, target, anchor, data_b64}]
//   node tests/peers/sign_item.mjs verify FILE...
//     Prints one JSON array: [{file, valid, id, address, tags}] as arbundles reads each item.
//
// Signers: "aoconnect" (createDataItemSigner(jwk) driven exactly the way aoconnect's message()
// drives it), "arbundles" (ArweaveSigner: arweave-js crypto driver), "ed25519" (arbundles'
// Curve25519 key class, type 2), "ethereum" (arbundles' EthereumSigner, type 3: ethers' signMessage).
// The ethereum signer also signs an AOS spawn ("spawn" case) and an Eval to it ("eval"), so a node
// can be driven end to end by an Ethereum key.
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import Arweave from "arweave";
import { createDataItemSigner } from "@permaweb/aoconnect";
import * as ArBundlesNs from "@dha-team/arbundles";

const ArBundles = ArBundlesNs.default ?? ArBundlesNs;
const { createData, DataItem, ArweaveSigner, Curve25519, EthereumSigner, SIG_CONFIG } = ArBundles;

const PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc"; // any 43-char base64url id
const aoTags = (type, ...more) => [
  { name: "Data-Protocol", value: "ao" },
  { name: "Variant", value: "ao.TN.1" },
  { name: "Type", value: type },
  ...more,
];
const CASES = {
  full: {
    data: "Send({ Target = ao.id, Data = 'ping' })",
    tags: aoTags("Message", { name: "Action", value: "Eval" }),
    target: PID,
    anchor: "00000000000000000000000000000042",
  },
  bare: { data: "", tags: [] },
  binary: { data: Uint8Array.from([0, 255, 128, 1, 2, 0xc3, 0x28]), tags: [{ name: "Content-Type", value: "application/octet-stream" }] },
  unicode: {
    data: "héllo wörld ✓ ".repeat(20),
    tags: [{ name: "Näme", value: "välue ✓ 🙂" }, { name: "Long", value: "x".repeat(200) }],
    target: PID,
  },
};

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const addressOf = (owner) => b64url(crypto.createHash("sha256").update(owner).digest());

// aoconnect's createDataItemSigner returns signer(create, kind); aoconnect's message() passes a
// `create` that lays out the unsigned item with arbundles' createData and returns its deep hash,
// then writes the returned signature at offset 2. Same protocol here, with the public packages.
async function signWithAoconnect(jwk, { data, tags, target, anchor }) {
  const signer = createDataItemSigner(jwk);
  let unsigned;
  const create = async ({ publicKey, type = 1 }) => {
    const meta = { ...SIG_CONFIG[type] };
    const pk = typeof publicKey === "string" ? Buffer.from(publicKey, "base64url") : Buffer.from(publicKey);
    const shape = { signatureType: type, ownerLength: meta.pubLength, signatureLength: meta.sigLength, publicKey: pk };
    unsigned = createData(data, shape, { target, tags, anchor });
    return unsigned.getSignatureData();
  };
  const { signature } = await signer(create, "ans104");
  const raw = unsigned.getRaw();
  raw.set(Buffer.from(signature), 2);
  return new DataItem(raw);
}

async function signWithArbundles(signer, { data, tags, target, anchor }) {
  const item = createData(data, signer, { target, tags, anchor });
  await item.sign(signer);
  return item;
}

class Ed25519Signer extends Curve25519 {
  constructor(seed, pub) {
    super("", b64url(pub));
    this.seed = seed;
    this.pub = pub;
  }
  get key() {
    return this.seed;
  }
  get publicKey() {
    return this.pub;
  }
}

function ed25519Key() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  return { jwk, seed: Buffer.from(jwk.d, "base64url"), pub: Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url") };
}

async function sign(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const arweave = Arweave.init({});
  const rsaJwk = await arweave.wallets.generate();
  const ed = ed25519Key();
  fs.writeFileSync(path.join(outDir, "rsa.jwk.json"), JSON.stringify(rsaJwk));
  fs.writeFileSync(path.join(outDir, "ed25519.jwk.json"), JSON.stringify(ed.jwk));
  const rsaAddress = await arweave.wallets.jwkToAddress(rsaJwk);
  const edSigner = new Ed25519Signer(ed.seed, ed.pub);
  const ethSigner = new EthereumSigner(crypto.randomBytes(32).toString("hex"));
  const signers = {
    aoconnect: { address: rsaAddress, run: (c) => signWithAoconnect(rsaJwk, c) },
    arbundles: { address: rsaAddress, run: (c) => signWithArbundles(new ArweaveSigner(rsaJwk), c) },
    ed25519: { address: addressOf(ed.pub), run: (c) => signWithArbundles(edSigner, c) },
    ethereum: { address: addressOf(ethSigner.publicKey), run: (c) => signWithArbundles(ethSigner, c) },
  };
  const manifest = [];
  const spawnCase = { data: "", tags: aoTags("Process", { name: "Module", value: "aos2_0_6" }) };
  const spawn = await signWithArbundles(ethSigner, spawnCase);
  const evalCase = { data: "return 6 * 7", tags: [{ name: "Action", value: "Eval" }], target: spawn.id };
  const extra = { ethereum: { spawn: [spawnCase, spawn], eval: [evalCase, null] } };
  for (const [signerName, signer] of Object.entries(signers)) {
    const cases = Object.entries(CASES).map(([name, c]) => [name, c, null]);
    for (const [name, [c, done]] of Object.entries(extra[signerName] ?? {})) cases.push([name, c, done]);
    for (const [caseName, c, done] of cases) {
      const item = done ?? (await signer.run(c));
      if (!(await DataItem.verify(item.getRaw()))) throw new Error(`${signerName}/${caseName}: JS item does not verify`);
      const file = `${caseName}-${signerName}.item`;
      fs.writeFileSync(path.join(outDir, file), item.getRaw());
      manifest.push({
        file, signer: signerName, case: caseName, id: item.id, address: signer.address,
        signature_type: item.signatureType, tags: item.tags, target: c.target ?? null,
        anchor: c.anchor ?? null, data_b64: b64url(typeof c.data === "string" ? Buffer.from(c.data) : c.data),
      });
    }
  }
  fs.writeFileSync(path.join(outDir, "manifest.json"), JSON.stringify(manifest, null, 1));
}

async function verify(files) {
  const out = [];
  for (const file of files) {
    const raw = fs.readFileSync(file);
    let valid = false;
    try {
      valid = await DataItem.verify(raw);
    } catch {
      valid = false;
    }
    const item = new DataItem(raw);
    out.push({ file, valid, id: item.id, address: addressOf(item.rawOwner), tags: item.tags });
  }
  process.stdout.write(JSON.stringify(out));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === "sign" && rest.length === 1) await sign(rest[0]);
else if (mode === "verify" && rest.length > 0) await verify(rest);
else {
  process.stderr.write("usage: sign_item.mjs sign OUT_DIR | verify FILE...\n");
  process.exit(2);
}
