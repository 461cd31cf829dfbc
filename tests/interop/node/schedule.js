"use strict";
// node schedule.js <redisUrl> <namespace> [--timeout ms]
// A node-resque Scheduler (the leader) that promotes due delayed items until none is left in
// <ns>:delayed_queue_schedule, printing each one it moves as {"event":"transferred",...}.
// No worker runs. Exit status 0, or 1 after --timeout ms (default 30000).
const { Scheduler } = require("node-resque");
const { parseArgs, connection, emit, closeAll, fail } = require("./lib");

async function main() {
  const { values: a, options } = parseArgs(process.argv.slice(2), ["redisUrl", "namespace"]);
  const timeout = Number(options.timeout || 30000);
  const conn = connection(a.redisUrl, a.namespace);
  const scheduler = new Scheduler({ connection: conn, timeout: 100 });
  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    clearTimeout(timer);
    await scheduler.end();
    await closeAll();
    process.exit(code);
  };
  const timer = setTimeout(() => {
    process.stderr.write(`schedule.js: timed out after ${timeout} ms\n`);
    stop(1);
  }, timeout);
  scheduler.on("error", fail);
  scheduler.on("leader", () => emit({ event: "leader", name: scheduler.name }));
  scheduler.on("transferredJob", (timestamp, job) => {
    emit({ event: "transferred", timestamp, job });
  });
  scheduler.on("poll", async () => {
    // "poll" fires before the due items are moved: check again a little later.
    setTimeout(async () => {
      if (!stopping && (await conn.redis.zcard(`${a.namespace}:delayed_queue_schedule`)) === 0) {
        emit({ event: "empty" });
        stop(0);
      }
    }, 50);
  });
  await scheduler.connect();
  await scheduler.start();
}

main().catch(fail);
