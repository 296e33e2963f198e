'use strict';

// Shared helpers of the ali-ons compatibility scripts (plain CommonJS, no extra dependencies).
//
// Every script:
//   * takes the NameServer address, a topic and a group from argv (`node x.js NAMESRV TOPIC GROUP`)
//     or from the env (TERN_NAMESRV, TERN_TOPIC, TERN_GROUP);
//   * arms a hard overall timeout (TERN_TIMEOUT_MS, default 60 000 ms);
//   * records every request ali-ons sends (request code -> response codes seen, with the first
//     remark of each failing code) and every server-initiated request it receives, so a failure
//     report can say exactly which request Tern answered wrongly;
//   * ends with exactly one JSON summary line on stdout (the last line) and exits 0 on success,
//     1 on a failed check, 2 on the hard timeout, 3 on a crash.
//
// ali-ons is used unmodified: the instrumentation wraps methods of its classes from outside
// (prototype wrappers installed before any client is created), it never edits its files.

const MQClientAPI = require('ali-ons/lib/mq_client_api');

const DEFAULT_TIMEOUT_MS = 60000;
const VERBOSE = process.env.TERN_VERBOSE === '1';

/** Reads `NAMESRV TOPIC GROUP` from argv, falling back to the env; exits 3 when one is missing. */
function parseArgs(scriptName) {
  const [ namesrv, topic, group ] = process.argv.slice(2);
  const args = {
    namesrv: namesrv || process.env.TERN_NAMESRV,
    topic: topic || process.env.TERN_TOPIC,
    group: group || process.env.TERN_GROUP,
  };
  const missing = Object.keys(args).filter(k => !args[k]);
  if (missing.length) {
    console.error(`usage: node ${scriptName}.js NAMESRV_ADDR TOPIC GROUP ` +
      `(or env TERN_NAMESRV / TERN_TOPIC / TERN_GROUP); missing: ${missing.join(', ')}`);
    process.exit(3);
  }
  return args;
}

/** A logger for ali-ons: silent unless TERN_VERBOSE=1 (warnings/errors always go to stderr). */
const logger = {
  info(...a) { if (VERBOSE) console.error('[ali-ons info]', ...a); },
  debug(...a) { if (VERBOSE) console.error('[ali-ons debug]', ...a); },
  warn(...a) { console.error('[ali-ons warn]', ...a); },
  error(...a) { console.error('[ali-ons error]', ...a); },
};

/**
 * The run's state: checks, notes, the wire trace and client errors, printed as the summary.
 * `check(name, ok, detail)` records one named assertion; the run passes when every check passed
 * and `fail()` was never called.
 */
class Run {
  constructor(script) {
    this.script = script;
    this.started = Date.now();
    this.checks = [];
    this.failures = [];
    this.notes = {};
    this.clientErrors = [];
    this.wire = {}; // "code" -> { "respCode": count }
    this.wireRemarks = {}; // "code/respCode" -> first remark
    this.oneway = {}; // "code" -> count
    this.serverRequests = {}; // "code" -> count
    this.finished = false;
  }

  log(...a) {
    console.error(`[${this.script} +${Date.now() - this.started}ms]`, ...a);
  }

  check(name, ok, detail) {
    this.checks.push({ name, ok: !!ok, detail });
    if (!ok) {
      this.failures.push(`${name}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
      this.log(`CHECK FAILED ${name}`, detail === undefined ? '' : JSON.stringify(detail));
    } else {
      this.log(`check ok ${name}`);
    }
    return !!ok;
  }

  note(key, value) {
    this.notes[key] = value;
  }

  fail(message) {
    this.failures.push(message);
    this.log('FAIL', message);
  }

  clientError(source, err) {
    const e = {
      source,
      name: err && err.name,
      code: err && err.code,
      message: String(err && err.message).slice(0, 300),
    };
    if (this.clientErrors.length < 50) {
      this.clientErrors.push(e);
    }
    if (VERBOSE) this.log('client error', JSON.stringify(e));
  }

  recordResponse(code, response) {
    const k = String(code);
    const rc = String(response && response.code);
    this.wire[k] = this.wire[k] || {};
    this.wire[k][rc] = (this.wire[k][rc] || 0) + 1;
    if (response && response.code !== 0) {
      const rk = `${k}/${rc}`;
      if (!(rk in this.wireRemarks)) {
        this.wireRemarks[rk] = {
          remark: response.remark,
          extFields: response.extFields,
        };
      }
    }
  }

  recordInvokeError(code, err) {
    const k = String(code);
    const rc = `error:${err && err.name}`;
    this.wire[k] = this.wire[k] || {};
    this.wire[k][rc] = (this.wire[k][rc] || 0) + 1;
    const rk = `${k}/${rc}`;
    if (!(rk in this.wireRemarks)) {
      this.wireRemarks[rk] = { remark: String(err && err.message).slice(0, 300) };
    }
  }

  summary(status) {
    return {
      script: this.script,
      ok: status === 'ok',
      status,
      elapsedMs: Date.now() - this.started,
      failures: this.failures,
      checks: this.checks,
      notes: this.notes,
      wire: this.wire,
      wireRemarks: this.wireRemarks,
      oneway: this.oneway,
      serverRequests: this.serverRequests,
      clientErrors: this.clientErrors,
    };
  }

  /** Prints the summary line and exits (only once). */
  finish(status) {
    if (this.finished) return;
    this.finished = true;
    const s = this.summary(status);
    const code = status === 'ok' ? 0 : status === 'failed' ? 1 : status === 'timeout' ? 2 : 3;
    process.stdout.write(JSON.stringify(s) + '\n', () => process.exit(code));
  }
}

/** Wraps MQClientAPI's transport methods so every request/response pair lands in `run`. */
function instrument(run) {
  const origInvoke = MQClientAPI.prototype.invoke;
  MQClientAPI.prototype.invoke = async function(addr, command, timeout) {
    const code = command.code;
    try {
      const response = await origInvoke.call(this, addr, command, timeout);
      run.recordResponse(code, response);
      return response;
    } catch (err) {
      run.recordInvokeError(code, err);
      throw err;
    }
  };
  const origOneway = MQClientAPI.prototype.invokeOneway;
  MQClientAPI.prototype.invokeOneway = async function(addr, command) {
    run.oneway[String(command.code)] = (run.oneway[String(command.code)] || 0) + 1;
    return origOneway.call(this, addr, command);
  };
}

/**
 * Counts every server-initiated request (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED...)
 * arriving on `mqClient`'s connections and passes it to `handler(command, address)` if given.
 * (ali-ons itself ignores all of them: nothing in it listens to the transport's 'request' event.)
 */
function watchServerRequests(run, mqClient, handler) {
  mqClient.on('request', (entity, address) => {
    const command = entity && entity.data;
    if (!command) return;
    const k = String(command.code);
    run.serverRequests[k] = (run.serverRequests[k] || 0) + 1;
    if (handler) {
      Promise.resolve()
        .then(() => handler(command, address))
        .catch(err => run.fail(`handling server request ${k}: ${err && err.stack}`));
    }
  });
}

/** Client options for an open-source NameServer: `nameSrv`, no access keys, short intervals. */
function clientOptions(namesrv, extra) {
  return Object.assign({
    nameSrv: namesrv,
    // RemotingClient asserts an httpclient; it is only used to resolve `onsAddr`, which a
    // `nameSrv` configuration never does.
    httpclient: {},
    logger,
    // Short periodic tasks so a test does not wait for the 30 s / 10 s defaults.
    pollNameServerInteval: 1000,
    heartbeatBrokerInterval: 1000,
    rebalanceInterval: 1000,
    persistConsumerOffsetInterval: 1000,
  }, extra || {});
}

/** Arms the hard timeout and crash handlers. */
function guard(run) {
  const timeoutMs = Number(process.env.TERN_TIMEOUT_MS || DEFAULT_TIMEOUT_MS);
  setTimeout(() => {
    run.fail(`hard timeout of ${timeoutMs} ms reached`);
    run.finish('timeout');
  }, timeoutMs);
  process.on('uncaughtException', err => {
    run.fail(`uncaught exception: ${err && err.stack}`);
    run.finish('crashed');
  });
  process.on('unhandledRejection', err => {
    run.fail(`unhandled rejection: ${err && err.stack}`);
    run.finish('crashed');
  });
}

/** Polls `pred` every 50 ms until true or `timeoutMs` passed; returns whether it became true. */
async function waitFor(pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** Runs `promise` but gives up after `ms` (resolving to `fallback`), so shutdown cannot hang. */
async function bounded(promise, ms, fallback) {
  let timer;
  const t = new Promise(resolve => { timer = setTimeout(() => resolve(fallback), ms); });
  try {
    return await Promise.race([ promise, t ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Closes ali-ons clients best-effort (UNREGISTER_CLIENT etc.), each bounded to 5 s. */
async function closeAll(run, clients) {
  for (const c of clients) {
    if (!c) continue;
    try {
      await bounded(c.close(), 5000, null);
    } catch (err) {
      run.clientError('close', err);
    }
  }
}

/**
 * Creates `topic` (perm RW, `queueNums` queues, SINGLE_TAG) on every master broker of the TBW102
 * route with UPDATE_AND_CREATE_TOPIC (17, ali-ons's `MQClientAPI.createTopic`), then waits until
 * the NameServer serves its route. Needed because ali-ons does not auto-create topics: its
 * `producer.send` throws the NameServer's TOPIC_NOT_EXIST (17) instead of falling back to the
 * TBW102 route as Java clients do.
 */
async function ensureTopic(run, mqClient, topic, queueNums) {
  const route = await mqClient.getDefaultTopicRouteInfoFromNameServer('TBW102', 3000);
  const masters = (route && route.brokerDatas || []).map(b => b.brokerAddrs && b.brokerAddrs['0']).filter(Boolean);
  if (!masters.length) {
    throw new Error(`no master broker in the TBW102 route: ${JSON.stringify(route)}`);
  }
  for (const addr of masters) {
    await mqClient.createTopic(addr, 'TBW102', {
      topicName: topic,
      readQueueNums: queueNums,
      writeQueueNums: queueNums,
      perm: 6,
      topicFilterType: 'SINGLE_TAG',
      topicSysFlag: 0,
      order: false,
    }, 3000);
  }
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      const r = await mqClient.getTopicRouteInfoFromNameServer(topic, 3000);
      if (r && r.queueDatas && r.queueDatas.length) {
        run.note('topicRoute', r);
        return r;
      }
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`topic ${topic} created on ${masters} but its route is not on the NameServer ` +
          `after 15 s: ${err.message}`);
      }
    }
    await sleep(100);
  }
}

/**
 * A client-side message id in the layout of RocketMQ's MessageClientIDSetter (PROTOCOL.md 3.6):
 * IPv4 127.0.0.1 + pid (short) + a random int + ms since the start of the month (int) + counter
 * (short), as 32 uppercase hex characters.
 */
let uniqCounter = 0;
function newUniqKey() {
  const b = Buffer.alloc(16);
  b.writeUInt8(127, 0);
  b.writeUInt8(0, 1);
  b.writeUInt8(0, 2);
  b.writeUInt8(1, 3);
  b.writeUInt16BE(process.pid & 0xffff, 4);
  b.writeInt32BE((Math.random() * 0x7fffffff) | 0, 6);
  const now = new Date();
  const monthStart = new Date(now.getFullYear(), now.getMonth(), 1).getTime();
  b.writeInt32BE((Date.now() - monthStart) | 0, 10);
  uniqCounter = (uniqCounter + 1) & 0xffff;
  b.writeUInt16BE(uniqCounter, 14);
  return b.toString('hex').toUpperCase();
}

module.exports = {
  parseArgs,
  logger,
  Run,
  instrument,
  watchServerRequests,
  clientOptions,
  guard,
  waitFor,
  sleep,
  bounded,
  closeAll,
  ensureTopic,
  newUniqKey,
};
