#!/usr/bin/env node
// Reference peer for httpsig@1.0: what the unmodified npm clients send and accept.
//
//   node tests/peers/httpsig_peer.mjs sign OUT_DIR
//     Generates an Arweave JWK (arweave-js), writes OUT_DIR/rsa.jwk.json, and sends the CASES below
//     through @permaweb/ao-core-libs (what aoconnect 0.0.98's `request()` runs) with
//     `signing-format: httpsig` to a local capture server. Writes OUT_DIR/requests.json:
//     [{case, address, method, url, headers: [[name, value]...], body_b64}].
//   node tests/peers/httpsig_peer.mjs verify FILE
//     FILE holds [{method, url, status?, headers: [[name, value]...], body_b64}]; prints one JSON array
//     of {valid, digest_ok} as http-message-signatures (the RFC 9421 library aoconnect uses) and
//     node:crypto see them (keyid = base64url RSA modulus -> rsa-pss-sha512; 32 bytes -> ed25519).
//   node tests/peers/httpsig_peer.mjs answers FILE
//     FILE holds node answers [{status, headers, body_b64}]; prints one JSON array of {address, error}:
//     the node address (base64url sha-256 of the wallet key) when http-message-signatures verifies the
//     wallet's vouch (tag "ao-session-key", over `ao-session-key` only), the answer's signature (tag
//     "ao-answer") by exactly that key over a content-digest that matches the body; an answer with one
//     signature (AONODE_ANSWER_KEY=wallet) is checked as such.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import crypto from "node:crypto";
import Arweave from "arweave";
import AOCore from "@permaweb/ao-core-libs";
import { httpbis } from "http-message-signatures";

const PID = "WzUXz9NjE8Yf1nFRd7nJ1fUVH0Vx2xQp1nvZ9r2pHRc";
const CASES = {
  headers: { path: "/ping", method: "POST", Action: "Balance", target: PID, data: "one line" },
  multiline: { path: `/${PID}~process@1.0/push`, method: "POST", Action: "Eval", target: PID,
               data: "local x = 1\nreturn x + 41" },
  typed: { path: "/typed", method: "POST", Count: 42, Ratio: 1.5, Empty: "", Items: [1, "two", 3],
           None: [], Nested: { Inner: "yes", Deep: "line\nbreak" }, data: "a\nb" },
  long: { path: "/long", method: "POST", Big: "x".repeat(5000), Note: "small", data: "d\n" },
};

async function sign(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const arweave = Arweave.init({});
  const jwk = await arweave.wallets.generate();
  fs.writeFileSync(path.join(outDir, "rsa.jwk.json"), JSON.stringify(jwk));
  const address = await arweave.wallets.jwkToAddress(jwk);
  const captured = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const headers = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
      captured.push({ method: req.method, url: req.url, headers, body_b64: Buffer.concat(chunks).toString("base64") });
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  const ao = AOCore.init({ jwk, url });
  const out = [];
  for (const [name, args] of Object.entries(CASES)) {
    await ao.request({ ...args, "signing-format": "httpsig" });
    const got = captured.pop();
    out.push({ case: name, address, ...got, url: url + got.url });
  }
  server.close();
  fs.writeFileSync(path.join(outDir, "requests.json"), JSON.stringify(out, null, 1));
}

function keyFor(keyid) {
  const raw = Buffer.from(keyid.replace(/^publickey:/, ""), "base64url");
  if (raw.length === 32) {
    const key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
    return { algs: ["ed25519"], verify: async (data, sig) => crypto.verify(null, data, key, sig) };
  }
  const key = crypto.createPublicKey({ key: { kty: "RSA", n: raw.toString("base64url"), e: "AQAB" }, format: "jwk" });
  return {
    algs: ["rsa-pss-sha512"],
    verify: async (data, sig) => crypto.verify("sha512", data, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
                                                                 saltLength: crypto.constants.RSA_PSS_SALTLEN_AUTO }, sig),
  };
}

async function verify(file) {
  const items = JSON.parse(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const item of items) {
    const headers = {};
    for (const [k, v] of item.headers) headers[k.toLowerCase()] = headers[k.toLowerCase()] ? `${headers[k.toLowerCase()]}, ${v}` : v;
    const body = Buffer.from(item.body_b64 || "", "base64");
    const message = item.status ? { status: item.status, headers } : { method: item.method, url: item.url, headers };
    let valid;
    try {
      valid = await httpbis.verifyMessage({ keyLookup: async (params) => keyFor(params.keyid) }, message);
    } catch (e) {
      valid = false;
    }
    let digest_ok = null;
    if (headers["content-digest"]) {
      const m = /sha-256=:([^:]*):/.exec(headers["content-digest"]);
      const given = m ? Buffer.from(m[1].replace(/-/g, "+").replace(/_/g, "/"), "base64") : Buffer.alloc(0);
      digest_ok = given.equals(crypto.createHash("sha256").update(body).digest());
    }
    out.push({ valid: valid === true, digest_ok });
  }
  process.stdout.write(JSON.stringify(out));
}

// One signature of `message` (selected by its signed `tag`; null: the only one), verified by the
// library; returns the keyid and the covered field values as read from the base the library built.
async function verifyOne(message, tag) {
  let seen = null;
  const valid = await httpbis.verifyMessage({
    keyLookup: async (params) => {
      if (tag !== null && params.tag !== tag) return null;
      const key = keyFor(params.keyid);
      return { ...key, verify: async (data, sig, p) => {
        const covered = {};
        for (const line of data.toString().split("\n")) {
          const m = /^"([^"]+)": (.*)$/.exec(line);
          if (m && m[1] !== "@signature-params") covered[m[1]] = m[2];
        }
        seen = { keyid: params.keyid, covered };
        return key.verify(data, sig, p);
      } };
    },
  }, message);
  if (valid !== true || seen === null) throw new Error(`signature ${tag} does not verify`);
  return seen;
}

async function answers(file) {
  const out = [];
  for (const item of JSON.parse(fs.readFileSync(file, "utf8"))) {
    const headers = {};
    for (const [k, v] of item.headers) headers[k.toLowerCase()] = v;
    const body = Buffer.from(item.body_b64 || "", "base64");
    const message = { status: item.status, headers };
    try {
      const digest = `sha-256=:${crypto.createHash("sha256").update(body).digest("base64")}:`;
      let answer, owner;
      if (headers["ao-session-key"] === undefined) {
        answer = await verifyOne(message, null);
        owner = answer.keyid;
      } else {
        const vouch = await verifyOne(message, "ao-session-key");
        if (Object.keys(vouch.covered).join() !== "ao-session-key") throw new Error("the vouch covers more");
        answer = await verifyOne(message, "ao-answer");
        if (answer.keyid !== vouch.covered["ao-session-key"]) throw new Error("not the vouched session key");
        owner = vouch.keyid;
      }
      if (answer.covered["content-digest"] !== digest) throw new Error("the signed digest is not the body's");
      const address = crypto.createHash("sha256").update(Buffer.from(owner, "base64url")).digest("base64url");
      out.push({ address, error: null });
    } catch (e) {
      out.push({ address: null, error: String(e.message || e) });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

const [cmd, arg] = process.argv.slice(2);
if (cmd === "sign") await sign(arg);
else if (cmd === "verify") await verify(arg);
else if (cmd === "answers") await answers(arg);
else {
  console.error("usage: httpsig_peer.mjs sign OUT_DIR | verify FILE | answers FILE");
  process.exit(2);
}
