"use strict";
// node enqueue.js <redisUrl> <namespace> <queue> <class> <jsonArgs>
// node-resque's Queue#enqueue: {"class","queue","args"} onto <ns>:queue:<queue>.
const { Queue } = require("node-resque");
const { parseArgs, connection, emit, closeAll, fail } = require("./lib");

async function main() {
  const { values: a } = parseArgs(process.argv.slice(2),
    ["redisUrl", "namespace", "queue", "class", "jsonArgs"]);
  const queue = new Queue({ connection: connection(a.redisUrl, a.namespace) });
  queue.on("error", fail);
  await queue.connect();
  const args = JSON.parse(a.jsonArgs);
  const done = await queue.enqueue(a.queue, a.class, args);
  emit({ enqueued: done, queue: a.queue, class: a.class, args });
  await queue.end();
  await closeAll();
}

main().catch(fail);
