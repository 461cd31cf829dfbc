"use strict";
// node work.js <redisUrl> <namespace> <queues> [--jobs N] [--timeout ms] [--scheduler 1]
//
// A node-resque Worker on the comma-separated <queues> with these jobs:
//   Archive   returns {"archived": <its arguments>}
//   NodeOnly  the same, under a class name jobqueue does not map
//   Explode   throws Error("node says no: <args as JSON>")
//   Sleep     waits <ms> milliseconds
// Every job it takes is printed as a JSON line ({"event":"success"|"failure",...}). It stops
// when a full poll of its queues finds nothing and at least N jobs (default 0) are done,
// and, with --scheduler, no delayed item is left (a node-resque Scheduler runs alongside and
// promotes due delayed items). Exit status 0, or 1 after --timeout ms (default 30000).
const { Worker, Scheduler } = require("node-resque");
const { parseArgs, connection, emit, closeAll, fail } = require("./lib");

async function main() {
  const { values: a, options } = parseArgs(process.argv.slice(2),
    ["redisUrl", "namespace", "queues"]);
  const wanted = Number(options.jobs || 0);
  const timeout = Number(options.timeout || 30000);
  const jobs = {
    Archive: { perform: async (...args) => ({ archived: args }) },
    NodeOnly: { perform: async (...args) => ({ archived: args }) },
    Sleep: { perform: (ms) => new Promise((resolve) => setTimeout(() => resolve(ms), ms)) },
    Explode: {
      perform: async (...args) => {
        throw new Error(`node says no: ${JSON.stringify(args)}`);
      },
    },
  };
  const conn = connection(a.redisUrl, a.namespace);
  const worker = new Worker(
    { connection: conn, queues: a.queues.split(","), timeout: 100 }, jobs);
  let scheduler = null;
  if (options.scheduler) {
    scheduler = new Scheduler(
      { connection: connection(a.redisUrl, a.namespace), timeout: 100 }, jobs);
    scheduler.on("error", fail);
    scheduler.on("transferredJob", (timestamp, job) => {
      emit({ event: "transferred", timestamp, job });
    });
  }
  let finished = 0;
  let stopping = false;
  worker.on("error", fail);
  worker.on("success", (queue, job, result) => {
    finished++;
    emit({ event: "success", worker: worker.name, queue, class: job.class, args: job.args,
      result });
  });
  worker.on("failure", (queue, job, error) => {
    finished++;
    emit({ event: "failure", worker: worker.name, queue, class: job.class, args: job.args,
      error: String(error && error.message) });
  });

  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    clearTimeout(timer);
    await worker.end();
    if (scheduler) await scheduler.end();
    await closeAll();
    process.exit(code);
  };
  const timer = setTimeout(() => {
    process.stderr.write(`work.js: timed out after ${timeout} ms (${finished} jobs done)\n`);
    stop(1);
  }, timeout);

  worker.on("pause", async () => {
    if (stopping || finished < wanted) return;
    if (scheduler && (await conn.redis.zcard(`${a.namespace}:delayed_queue_schedule`)) > 0) {
      return;
    }
    emit({ event: "idle", worker: worker.name, finished });
    stop(0);
  });

  await worker.connect();
  if (scheduler) {
    await scheduler.connect();
    await scheduler.start();
  }
  emit({ event: "start", worker: worker.name });
  await worker.start();
}

main().catch(fail);
