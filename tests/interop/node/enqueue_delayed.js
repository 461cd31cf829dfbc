"use strict";
// node enqueue_delayed.js <redisUrl> <namespace> <in|at> <milliseconds> <queue> <class> <jsonArgs>
// node-resque's Queue#enqueueIn (delay in ms) or Queue#enqueueAt (epoch ms): the item goes
// to resque-scheduler's layout (delayed_queue_schedule, delayed:<ts>, timestamps:<item>).
const { Queue } = require("node-resque");
const { parseArgs, connection, emit, closeAll, fail, usage } = require("./lib");

async function main() {
  const { values: a } = parseArgs(process.argv.slice(2),
    ["redisUrl", "namespace", "mode", "milliseconds", "queue", "class", "jsonArgs"]);
  const queue = new Queue({ connection: connection(a.redisUrl, a.namespace) });
  queue.on("error", fail);
  await queue.connect();
  const args = JSON.parse(a.jsonArgs);
  const ms = Number(a.milliseconds);
  let done;
  if (a.mode === "in") done = await queue.enqueueIn(ms, a.queue, a.class, args);
  else if (a.mode === "at") done = await queue.enqueueAt(ms, a.queue, a.class, args);
  else usage("<redisUrl> <namespace> <in|at> <milliseconds> <queue> <class> <jsonArgs>");
  emit({ scheduled: done, queue: a.queue, class: a.class, args,
    timestamps: await queue.scheduledAt(a.queue, a.class, args) });
  await queue.end();
  await closeAll();
}

main().catch(fail);
