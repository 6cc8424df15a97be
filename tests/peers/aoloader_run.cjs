#!/usr/bin/env node
// Reference peer: runs AOS messages through the real @permaweb/ao-loader so our engine can be
// compared with it (outputs and memory sha256) and benchmarked against it.
//
// Usage (node >= 20 needs --experimental-wasm-memory64 for wasm64 images):
//   node --experimental-wasm-memory64 tests/peers/aoloader_run.cjs IMAGE MESSAGES.json [options]
//     MESSAGES.json: {"messages": [{"msg": {...} | "<json>", "env": {...} | "<json>"}, ...]}
//     prints one JSON line per message: {output, error, messages, spawns, assignments,
//     memory_sha256, memory_size}
//   --format F          ao-loader format (default wasm64-unknown-emscripten-draft_2024_02_15)
//   --memory-limit N    passed to AoLoader as memoryLimit (default 1 GiB)
//   --compute-limit N   passed to AoLoader as computeLimit (default 9e12)
//   --dump-dir DIR      also write the memory after message i to DIR/mem-<i>.bin
//   --weavedrive DIR    give ao-loader a WeaveDrive extension over DIR/{data,tx,block}/<name>
//                       (everything admissible, as the extension's test mode)
//   --trace             log every wasm import call (name, args, result) to stderr as JSON lines
//   --warmup W          with --bench: run the message W times untimed first (V8 tiers up hot code)
//   --rounds R          with --bench: R timed rounds of N; messages_per_s is the best round
//   --unsafe-memory     AoLoader option UNSAFE_MEMORY: results carry the live heap instead of a copy
//   --bench N           after the messages, run the LAST message N more times, passing the returned
//                       Memory back each time; prints {"bench": {n, rounds, messages_per_s,
//                       load_seconds (the AoLoader() call), memory_sha256 (after the last repeat)}}
//
// Never call Date.now or Math.random here: ao-loader replaces both with deterministic counters
// shared with the wasm imports, so an extra call would shift the state we compare.
"use strict";

// os.date goes through host-timezone shims (_tzset_js, _localtime_js); pin them before any Date use.
process.env.TZ = "UTC";

const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

const DEFAULT_FORMAT = "wasm64-unknown-emscripten-draft_2024_02_15";

function parseArgs(argv) {
  const opts = {
    format: DEFAULT_FORMAT,
    memoryLimit: 1024 * 1024 * 1024,
    computeLimit: 9e12,
    dumpDir: null,
    trace: false,
    bench: 0,
    unsafeMemory: false,
    warmup: 0,
    rounds: 1,
    positional: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--format") opts.format = argv[++i];
    else if (a === "--memory-limit") opts.memoryLimit = Number(argv[++i]);
    else if (a === "--compute-limit") opts.computeLimit = Number(argv[++i]);
    else if (a === "--dump-dir") opts.dumpDir = argv[++i];
    else if (a === "--trace") opts.trace = true;
    else if (a === "--weavedrive") opts.weavedrive = argv[++i];
    else if (a === "--bench") opts.bench = Number(argv[++i]);
    else if (a === "--unsafe-memory") opts.unsafeMemory = true;
    else if (a === "--warmup") opts.warmup = Number(argv[++i]);
    else if (a === "--rounds") opts.rounds = Number(argv[++i]);
    else opts.positional.push(a);
  }
  if (opts.positional.length !== 2) {
    process.stderr.write("usage: aoloader_run.cjs IMAGE MESSAGES.json [options]\n");
    process.exit(2);
  }
  return opts;
}

// emscripten's /dev/random and /dev/urandom refill a 1024-byte buffer from crypto.getRandomValues
// (SQLite reads them to seed its PRNG). Feed it the fixed stream aonode's MemFS uses
// (engine/wasm/memfs.py random_fill), so memories that depend on it can be compared at all.
function installDeterministicRandom() {
  let fill = 0;
  globalThis.crypto.getRandomValues = (view) => {
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    for (let at = 0, j = 0; at < bytes.length; at += 32, j++) {
      const block = crypto.createHash("sha256").update(`aonode-urandom:${fill}:${j}`).digest();
      bytes.set(block.subarray(0, Math.min(32, bytes.length - at)), at);
    }
    fill++;
    return view;
  };
}

// A WeaveDrive extension over a local directory, with the legacy CU extension's FS behaviour: an
// opened item becomes an emscripten FS node and stream (data nodes report the item's size and read
// at the stream's position; a read at or past the end gets the whole item, as a gateway answers a
// Range past the end), headers are data files read from their start.
function localWeaveDrive(dir) {
  return function WeaveDrive(mod, FS) {
    const file = (kind, name) => {
      const p = path.join(dir, kind, name);
      return fs.existsSync(p) ? fs.readFileSync(p) : null;
    };
    const streamOf = (fd) => FS.streams.find((s) => s && s.fd === fd);
    return {
      async open(filename) {
        const [, kind, id] = filename.split("/");
        if (kind === "tx" || kind === "block") {
          FS.createPath("/", kind, true, false);
          if (!FS.analyzePath(filename).exists) {
            const body = file(kind, id);
            if (body === null) return 0;
            FS.createDataFile("/", `${kind}/${id}`, body, true, false);
          }
          return FS.open(filename, "r").fd;
        }
        if (kind !== "data") return 0;
        if (!FS.analyzePath(filename).exists) {
          const body = file("data", id);
          if (body === null) return 0;
          const node = FS.createFile("/", `data/${id}`, { isDevice: false, contents: null }, true, false);
          node.total_size = body.length;
          Object.defineProperties(node, { usedBytes: { get: () => body.length } });
        }
        return FS.open(filename, "r").fd;
      },
      async read(fd, dstPtr, length) {
        const stream = streamOf(fd);
        const dst = Number(dstPtr);
        const want = Number(length);
        if (stream.path.startsWith("/tx/") || stream.path.startsWith("/block/")) {
          mod.HEAP8.set(stream.node.contents.subarray(0, want), dst);
          return want;
        }
        const body = file("data", stream.node.name);
        const from = stream.position >= body.length ? 0 : stream.position;
        const chunk = body.subarray(from, Math.min(body.length, from + want));
        mod.HEAP8.set(chunk, dst);
        stream.position += chunk.length;
        return chunk.length;
      },
      close(fd) {
        FS.close(streamOf(fd));
      },
    };
  };
}

function loadAoLoader() {
  // Resolve from the repository root so the pinned copy in node_modules is the one used.
  const root = path.resolve(__dirname, "..", "..");
  return require(require.resolve("@permaweb/ao-loader", { paths: [root] }));
}

// Wrap every function import so each call is logged; installed before AoLoader instantiates.
function installImportTracer() {
  const original = WebAssembly.instantiate;
  // Some shims return a whole heap view (memcpy returns HEAPU8); log only scalars.
  const show = (v) => (typeof v === "bigint" ? v.toString() : ArrayBuffer.isView(v) ? "<view>" : v);
  let memory = null;
  const cString = (ptr) => {
    const bytes = new Uint8Array(memory.buffer);
    let end = Number(ptr);
    while (bytes[end] !== 0) end++;
    return Buffer.from(bytes.subarray(Number(ptr), end)).toString("utf8");
  };
  WebAssembly.instantiate = function (binary, imports) {
    const traced = {};
    for (const [mod, fns] of Object.entries(imports || {})) {
      traced[mod] = {};
      for (const [name, fn] of Object.entries(fns)) {
        if (typeof fn !== "function") {
          traced[mod][name] = fn;
          continue;
        }
        traced[mod][name] = function (...args) {
          let result;
          try {
            result = fn.apply(this, args);
          } catch (e) {
            process.stderr.write(JSON.stringify({ import: name, args: args.map(show), threw: String(e) }) + "\n");
            throw e;
          }
          const entry = { import: name, args: args.map(show), result: show(result) };
          if (name === "__asyncjs__weavedrive_open") entry.filename = cString(args[0]);
          process.stderr.write(JSON.stringify(entry) + "\n");
          return result;
        };
      }
    }
    return original.call(WebAssembly, binary, traced).then((res) => {
      memory = (res.instance || res).exports.memory;
      return res;
    });
  };
}

function asObject(v) {
  return typeof v === "string" ? JSON.parse(v) : v;
}

function sha256(buf) {
  return crypto.createHash("sha256").update(buf).digest("hex");
}

function memoryBytes(memory) {
  // A copy (Uint8Array) by default; the heap's ArrayBuffer itself with UNSAFE_MEMORY.
  return ArrayBuffer.isView(memory)
    ? Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength)
    : Buffer.from(memory);
}

function resultLine(res) {
  const mem = memoryBytes(res.Memory);
  return {
    output: res.Output === undefined ? null : res.Output,
    error: res.Error === undefined ? null : res.Error,
    messages: res.Messages || [],
    spawns: res.Spawns || [],
    assignments: res.Assignments || [],
    memory_sha256: sha256(mem),
    memory_size: mem.length,
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const [imagePath, messagesPath] = opts.positional;
  if (opts.trace) installImportTracer();
  installDeterministicRandom();
  const AoLoader = loadAoLoader();
  const binary = fs.readFileSync(imagePath);
  const { messages } = JSON.parse(fs.readFileSync(messagesPath, "utf8"));

  const loadStart = process.hrtime.bigint();
  const handle = await AoLoader(binary, {
    format: opts.format,
    memoryLimit: opts.memoryLimit,
    computeLimit: opts.computeLimit,
    UNSAFE_MEMORY: opts.unsafeMemory,
    // Keep the module's stdout/stderr off our stdout, which carries the JSON lines.
    print: (s) => process.stderr.write("[wasm stdout] " + s + "\n"),
    printErr: (s) => process.stderr.write("[wasm stderr] " + s + "\n"),
    ...(opts.weavedrive ? { WeaveDrive: localWeaveDrive(opts.weavedrive) } : {}),
  });

  const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;

  let memory = null;
  for (let i = 0; i < messages.length; i++) {
    const { msg, env } = messages[i];
    let line;
    if (opts.trace) process.stderr.write(JSON.stringify({ message: i }) + "\n");
    try {
      const res = await handle(memory, asObject(msg), asObject(env));
      memory = res.Memory;
      line = resultLine(res);
      if (opts.dumpDir) {
        fs.mkdirSync(opts.dumpDir, { recursive: true });
        fs.writeFileSync(path.join(opts.dumpDir, `mem-${i}.bin`), memoryBytes(memory));
      }
    } catch (e) {
      // ao-loader throws the response when the module answers {"ok": false}.
      line = { thrown: typeof e === "object" ? e : String(e) };
    }
    process.stdout.write(JSON.stringify(line) + "\n");
  }

  if (opts.bench > 0 && messages.length > 0) {
    const { msg, env } = messages[messages.length - 1];
    const m = asObject(msg);
    const e = asObject(env);
    for (let i = 0; i < opts.warmup; i++) {
      const res = await handle(memory, m, e);
      memory = res.Memory;
    }
    // Best of several timed rounds: the machine is shared, the best round is the least disturbed one.
    const rates = [];
    for (let r = 0; r < opts.rounds; r++) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < opts.bench; i++) {
        const res = await handle(memory, m, e);
        memory = res.Memory;
      }
      rates.push(opts.bench / (Number(process.hrtime.bigint() - start) / 1e9));
    }
    const bench = {
      n: opts.bench,
      rounds: rates,
      messages_per_s: Math.max(...rates),
      load_seconds: loadSeconds,
      memory_sha256: sha256(memoryBytes(memory)),
    };
    process.stdout.write(JSON.stringify({ bench }) + "\n");
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
