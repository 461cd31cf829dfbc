"use strict";
// Shared plumbing for the interop scripts: argument parsing, one ioredis client per
// node-resque object (on the Redis URL the Python test passes), JSON-line output.
const IORedis = require("ioredis");

function usage(text) {
  process.stderr.write(`usage: node ${process.argv[1]} ${text}\n`);
  process.exit(2);
}

// Positional arguments, plus "--name value" options (collected into `options`).
function parseArgs(argv, names) {
  const positional = [];
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) {
      options[argv[i].slice(2)] = argv[i + 1];
      i++;
    } else {
      positional.push(argv[i]);
    }
  }
  if (positional.length < names.length) usage(names.map((n) => `<${n}>`).join(" "));
  const values = {};
  names.forEach((name, i) => { values[name] = positional[i]; });
  return { values, rest: positional.slice(names.length), options };
}

const clients = [];

// node-resque's connection options: an ioredis client of our own (so the URL, database
// included, is honoured) and the namespace.
function connection(url, namespace) {
  const redis = new IORedis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true });
  clients.push(redis);
  return { redis, namespace };
}

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

async function closeAll() {
  await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
}

function fail(error) {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  closeAll().finally(() => process.exit(1));
}

module.exports = { parseArgs, connection, emit, closeAll, fail, usage };
