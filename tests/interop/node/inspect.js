"use strict";
// node inspect.js <redisUrl> <namespace> <what> [arg]
// Print, as one JSON line, what node-resque's Queue API reports:
//   workers | allWorkingOn | stats | failedCount | failed | queues | length <q> | queued <q>
//   cleanOldWorkers <ageMs>        Queue#cleanOldWorkers (force-cleans workers whose job is older)
//   checkStuckWorkers <timeoutMs>  a Scheduler's stuck-worker sweep (worker:ping:* older than this)
//   del <q> <class> <jsonArgs>     Queue#del (remove by value)
//   retryAndRemoveFailed <index>   Queue#retryAndRemoveFailed of the failed record at <index>
const { Queue, Scheduler } = require("node-resque");
const { parseArgs, connection, emit, closeAll, fail } = require("./lib");

async function main() {
  const { values: a, rest } = parseArgs(process.argv.slice(2), ["redisUrl", "namespace", "what"]);
  const conn = connection(a.redisUrl, a.namespace);
  const errors = [];
  if (a.what === "checkStuckWorkers") {
    const scheduler = new Scheduler({ connection: conn, stuckWorkerTimeout: Number(rest[0]) });
    const cleaned = [];
    scheduler.on("error", (e) => errors.push(String(e)));
    scheduler.on("cleanStuckWorker", (name, payload, delta) => cleaned.push({ name, payload, delta }));
    await scheduler.connect();
    await scheduler.checkStuckWorkers();
    emit({ result: cleaned, errors });
    await scheduler.queue.end();
    await closeAll();
    return;
  }
  const queue = new Queue({ connection: conn });
  queue.on("error", (e) => errors.push(String(e)));
  await queue.connect();
  let result;
  switch (a.what) {
    case "workers": result = await queue.workers(); break;
    case "allWorkingOn": result = await queue.allWorkingOn(); break;
    case "stats": result = await queue.stats(); break;
    case "failedCount": result = await queue.failedCount(); break;
    case "failed": result = await queue.failed(0, -1); break;
    case "queues": result = await queue.queues(); break;
    case "length": result = await queue.length(rest[0]); break;
    case "queued": result = await queue.queued(rest[0], 0, -1); break;
    case "cleanOldWorkers": result = await queue.cleanOldWorkers(Number(rest[0])); break;
    case "del": result = await queue.del(rest[0], rest[1], JSON.parse(rest[2])); break;
    case "retryAndRemoveFailed": {
      const [record] = await queue.failed(Number(rest[0]), Number(rest[0]));
      result = await queue.retryAndRemoveFailed(record);
      break;
    }
    default: throw new Error(`unknown request ${a.what}`);
  }
  emit({ result, errors });
  await queue.end();
  await closeAll();
}

main().catch(fail);
