'use strict';

// delay_retry.js NAMESRV TOPIC GROUP
//
// Needs a broker started with short delay levels, e.g. `--message-delay-level "1s 2s 3s"`; the
// script must be told the same list in env TERN_DELAY_LEVELS (default "1s 2s 3s").
//
// 1. Delay: a message sent by ali-ons with `delayTimeLevel = L` (env TERN_DELAY_LEVEL, default 3,
//    the last of the short levels: 3 s here but 10 s with RocketMQ's default levels, so a broker
//    that ignores its configuration is caught) must reach a running consumer no earlier than the
//    level's delay after the send started, and not more than 5 s after it was due.
// 2. Retry: a handler that throws on the first two deliveries makes ali-ons send
//    CONSUMER_SEND_MSG_BACK (36, delayLevel 0 = broker decides: level 3 + reconsumeTimes, clamped
//    to the highest level); the message must come back through `%RETRY%<group>` with reconsume
//    counts 0, 1, 2, with RETRY_TOPIC = the original topic (ali-ons drops retry messages without
//    it), ORIGIN_MESSAGE_ID = the first delivery's id, the body intact, and each redelivery no
//    earlier than its level's delay. CONSUMER_SEND_MSG_BACK itself must succeed: ali-ons falls back
//    to a plain SEND to `%RETRY%<group>` when it fails, which would hide a broker gap.
//
// Requests exercised: as produce_consume.js plus 36 and the broker's schedule service.

const { Producer, Consumer, Message } = require('ali-ons');
const MQClientAPI = require('ali-ons/lib/mq_client_api');
const common = require('./common');

const run = new common.Run('delay_retry');
common.guard(run);
common.instrument(run);
const args = common.parseArgs('delay_retry');

const LEVELS = (process.env.TERN_DELAY_LEVELS || '1s 2s 3s').trim().split(/\s+/).map(parseLevel);
const DELAY_LEVEL = Number(process.env.TERN_DELAY_LEVEL || 3);
const FAILURES = 2;
const retryTopic = `%RETRY%${args.group}`;

function parseLevel(token) {
  const m = /^(\d+)([smhd])$/.exec(token);
  if (!m) {
    throw new Error(`bad delay level token ${token}`);
  }
  const unit = { s: 1000, m: 60000, h: 3600000, d: 86400000 }[m[2]];
  return Number(m[1]) * unit;
}

function levelMs(level) {
  const clamped = Math.min(Math.max(level, 1), LEVELS.length);
  return LEVELS[clamped - 1];
}

// Raw pulls of the retry topic, to show which properties the broker put on retried records.
const rawRetry = [];
const origPull = MQClientAPI.prototype.pullMessage;
MQClientAPI.prototype.pullMessage = async function(addr, header, timeout) {
  const result = await origPull.call(this, addr, header, timeout);
  if (header.topic === retryTopic) {
    for (const m of result.msgFoundList) {
      if (rawRetry.length < 20) {
        rawRetry.push({ topic: m.topic, reconsumeTimes: m.reconsumeTimes, properties: m.properties });
      }
    }
  }
  return result;
};

async function main() {
  run.note('config', { levelsMs: LEVELS, delayLevel: DELAY_LEVEL, delayMs: levelMs(DELAY_LEVEL) });
  const producer = new Producer(common.clientOptions(args.namesrv, {
    producerGroup: `${args.group}_PRODUCER`,
  }));
  producer.on('error', err => run.clientError('producer', err));
  await producer.ready();
  // ali-ons cannot auto-create topics (see common.ensureTopic): create it like `mqadmin updateTopic`.
  await common.ensureTopic(run, producer._mqClient, args.topic, 4);

  // Create the topic and prove the consumer is live before the timed sends.
  const warm = await producer.send(new Message(args.topic, 'WARM', 'warm-up'));
  run.check('warm-up send SEND_OK', warm.sendStatus === 'SEND_OK', warm);

  const deliveries = { WARM: [], DELAY: [], RETRY: [] };
  const consumer = new Consumer(common.clientOptions(args.namesrv, {
    consumerGroup: args.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
  }));
  consumer.on('error', err => {
    if (!/intentional failure/.test(String(err && err.message))) {
      run.clientError('consumer', err);
    }
  });
  consumer.subscribe(args.topic, '*', async msg => {
    const list = deliveries[msg.tags];
    if (!list) {
      run.fail(`unexpected message tags=${msg.tags} msgId=${msg.msgId}`);
      return;
    }
    list.push({
      at: Date.now(),
      msgId: msg.msgId,
      topic: msg.topic,
      reconsumeTimes: msg.reconsumeTimes,
      body: msg.body ? msg.body.toString() : null,
      properties: Object.assign({}, msg.properties),
      bornTimestamp: msg.bornTimestamp,
      storeTimestamp: msg.storeTimestamp,
    });
    if (msg.tags === 'RETRY' && deliveries.RETRY.length <= FAILURES) {
      throw new Error(`intentional failure #${deliveries.RETRY.length}`);
    }
  });
  await consumer.ready();
  const warmed = await common.waitFor(() => deliveries.WARM.length >= 1, 30000);
  if (!run.check('consumer received the warm-up message within 30 s', warmed, deliveries.WARM.length)) {
    await common.closeAll(run, [ consumer, producer ]);
    return;
  }

  // 1. Delay level.
  const delayMs = levelMs(DELAY_LEVEL);
  const delayed = new Message(args.topic, 'DELAY', 'delayed-body');
  delayed.delayTimeLevel = DELAY_LEVEL;
  const t0 = Date.now();
  const delayedResult = await producer.send(delayed);
  run.check('delayed send SEND_OK', delayedResult.sendStatus === 'SEND_OK', delayedResult);

  // 2. Retry (sent right away so both run in parallel).
  const retryBody = 'retry-body-' + t0;
  const retryResult = await producer.send(new Message(args.topic, 'RETRY', retryBody));
  run.check('retry-candidate send SEND_OK', retryResult.sendStatus === 'SEND_OK', retryResult);

  const gotDelayed = await common.waitFor(() => deliveries.DELAY.length >= 1, delayMs + 15000);
  if (run.check(`delayed message delivered within ${delayMs + 15000} ms`, gotDelayed, deliveries.DELAY.length)) {
    const d = deliveries.DELAY[0];
    const after = d.at - t0;
    run.note('delay', { sentAt: t0, deliveredAfterMs: after, expectedMs: delayMs, properties: d.properties,
      bornTimestamp: d.bornTimestamp, storeTimestamp: d.storeTimestamp });
    run.check('delayed message arrived no earlier than its level\'s delay', after >= delayMs,
      { deliveredAfterMs: after, delayMs });
    run.check('delayed message arrived at most 5 s after it was due', after < delayMs + 5000,
      { deliveredAfterMs: after, delayMs });
    run.check('delayed message comes back on its real topic with its body',
      d.topic === args.topic && d.body === 'delayed-body', { topic: d.topic, body: d.body });
    run.check('delayed message msgId differs from the send\'s (it was re-put)', d.msgId !== delayedResult.msgId,
      { sent: delayedResult.msgId, delivered: d.msgId });
  }

  // Retries: first delivery + FAILURES redeliveries; each redelivery waits level 3 + n (clamped).
  let retryBudget = 10000;
  for (let n = 0; n < FAILURES; n++) {
    retryBudget += levelMs(3 + n) + 5000;
  }
  const gotRetries = await common.waitFor(() => deliveries.RETRY.length >= FAILURES + 1, retryBudget);
  const r = deliveries.RETRY;
  run.note('retryDeliveries', r.map((x, idx) => ({
    afterPreviousMs: idx ? x.at - r[idx - 1].at : x.at - t0,
    msgId: x.msgId, topic: x.topic, reconsumeTimes: x.reconsumeTimes, properties: x.properties,
  })));
  run.note('rawRetryPulls', rawRetry);
  run.check(`failing message redelivered ${FAILURES} times within ${retryBudget} ms`, gotRetries,
    `deliveries: ${r.length}`);
  run.check('reconsume count grows 0, 1, 2',
    r.length >= FAILURES + 1 && r.slice(0, FAILURES + 1).every((x, idx) => x.reconsumeTimes === idx),
    r.map(x => x.reconsumeTimes));
  run.check('retried deliveries keep the body', r.every(x => x.body === retryBody), r.map(x => x.body));
  for (let idx = 1; idx < r.length && idx <= FAILURES; idx++) {
    const x = r[idx];
    const wait = x.at - r[idx - 1].at;
    const expectedMs = levelMs(3 + idx - 1);
    run.check(`redelivery #${idx} waited its retry level's delay`, wait >= expectedMs - 20,
      { waitedMs: wait, expectedMs });
    run.check(`redelivery #${idx} carries RETRY_TOPIC=${args.topic}`,
      x.properties.RETRY_TOPIC === args.topic, x.properties.RETRY_TOPIC);
    run.check(`redelivery #${idx} carries ORIGIN_MESSAGE_ID of the first delivery`,
      x.properties.ORIGIN_MESSAGE_ID === r[0].msgId,
      { origin: x.properties.ORIGIN_MESSAGE_ID, first: r[0].msgId });
  }
  const sendBack = run.wire['36'] || {};
  run.check('CONSUMER_SEND_MSG_BACK (36) always answered SUCCESS (no client fallback)',
    Object.keys(sendBack).length > 0 && Object.keys(sendBack).every(k => k === '0'),
    { responses: sendBack, remarks: Object.keys(run.wireRemarks).filter(k => k.startsWith('36/'))
      .map(k => ({ [k]: run.wireRemarks[k] })) });

  // No extra deliveries of anything.
  await common.sleep(1500);
  run.check('warm-up and delayed messages delivered exactly once',
    deliveries.WARM.length === 1 && deliveries.DELAY.length === 1,
    { warm: deliveries.WARM.length, delay: deliveries.DELAY.length });
  run.check('the retried message stops after the successful attempt', r.length === FAILURES + 1, r.length);

  await common.closeAll(run, [ consumer, producer ]);
}

main().then(
  () => run.finish(run.failures.length ? 'failed' : 'ok'),
  err => {
    run.fail(`crashed: ${err && err.stack}`);
    run.finish('crashed');
  }
);
