'use strict';

// transaction.js NAMESRV TOPIC GROUP
//
// ali-ons has no transaction API, so this script drives RocketMQ's transactional-message protocol
// the way Java's TransactionMQProducer does, through ali-ons's own transport (MQClient.invoke /
// invokeOneway, RemotingCommand, MessageDecoder) and its unmodified producer/consumer:
//
// * half message: SEND_MESSAGE_V2 (310) with properties TRAN_MSG=true, PGROUP=<producer group>,
//   a client UNIQ_KEY, and sysFlag 0x4 (TRANSACTION_PREPARED);
// * END_TRANSACTION (37), oneway, header of PROTOCOL.md 5.3: commit 8, rollback 12, unknown 0;
// * the producer group heartbeats (ali-ons's MQClient every second), so the broker can send
//   CHECK_TRANSACTION_STATE (39, oneway) on its connection; the script answers with
//   END_TRANSACTION oneway, fromTransactionCheck=true, offsets copied from the check header.
//
// Needs a broker with short transaction timings, e.g. `--transaction-timeout-ms 1000
// --transaction-check-interval-ms 1000`. Four transactions:
//   COMMIT        -> consumed exactly once, never checked;
//   ROLLBACK      -> never consumed, never checked;
//   UNKNOWN_COMMIT   (END with 0) -> checked -> commit   -> consumed exactly once;
//   UNKNOWN_ROLLBACK (END with 0) -> checked -> rollback -> never consumed.
// A consumer (subscription "TX") checks what reaches the real topic.

const path = require('path');
const { Producer, Consumer, Message } = require('ali-ons');
const RemotingCommand = require('ali-ons/lib/protocol/command/remoting_command');
const MessageDecoder = require('ali-ons/lib/message/message_decoder');
const common = require('./common');

// ali-ons's own byte-buffer dependency (resolved next to ali-ons, not a dependency of ours).
const ByteBuffer = require(require.resolve('byte', { paths: [ path.dirname(require.resolve('ali-ons')) ] }));

const SEND_MESSAGE_V2 = 310;
const END_TRANSACTION = 37;
const CHECK_TRANSACTION_STATE = 39;
const COMMIT = 8;
const ROLLBACK = 12;
const UNKNOWN = 0;
const SETTLE_MS = Number(process.env.TERN_TX_SETTLE_MS || 5000);

const run = new common.Run('transaction');
common.guard(run);
common.instrument(run);
const args = common.parseArgs('transaction');
const producerGroup = `${args.group}_TX_PRODUCER`;

// name -> { first decision, decision on check, half send response, checks received }
const txs = {
  COMMIT: { first: COMMIT, onCheck: COMMIT },
  ROLLBACK: { first: ROLLBACK, onCheck: ROLLBACK },
  UNKNOWN_COMMIT: { first: UNKNOWN, onCheck: COMMIT },
  UNKNOWN_ROLLBACK: { first: UNKNOWN, onCheck: ROLLBACK },
};
const byUniq = new Map();
const unmatchedChecks = [];

function commitLogOffsetOf(offsetMsgId) {
  return Number(MessageDecoder.decodeMessageId(offsetMsgId).offset.toString());
}

function endTransactionCommand(fields) {
  return RemotingCommand.createRequestCommand(END_TRANSACTION, {
    producerGroup,
    tranStateTableOffset: fields.tranStateTableOffset,
    commitLogOffset: fields.commitLogOffset,
    commitOrRollback: fields.commitOrRollback,
    fromTransactionCheck: fields.fromTransactionCheck,
    msgId: fields.msgId,
    transactionId: fields.transactionId,
    topic: args.topic,
  });
}

/** Answers one CHECK_TRANSACTION_STATE the way Java's ClientRemotingProcessor does. */
async function onCheck(mqClient, command, address) {
  const h = command.extFields || {};
  let msg = null;
  if (command.body) {
    msg = MessageDecoder.decode(ByteBuffer.wrap(command.body));
  }
  const uniq = (msg && msg.properties && msg.properties.UNIQ_KEY) || h.msgId;
  const check = {
    at: Date.now(),
    address,
    header: h,
    body: msg ? {
      topic: msg.topic,
      queueId: msg.queueId,
      tags: msg.properties.TAGS,
      pgroup: msg.properties.PGROUP,
      tranMsg: msg.properties.TRAN_MSG,
      uniqKey: msg.properties.UNIQ_KEY,
      checkTimes: msg.properties.TRANSACTION_CHECK_TIMES,
      body: msg.body ? msg.body.toString() : null,
    } : null,
  };
  const tx = byUniq.get(uniq);
  if (!tx) {
    unmatchedChecks.push(check);
    return;
  }
  tx.checks.push(check);
  await mqClient.invokeOneway(address, endTransactionCommand({
    tranStateTableOffset: h.tranStateTableOffset,
    commitLogOffset: h.commitLogOffset,
    commitOrRollback: tx.onCheck,
    fromTransactionCheck: true,
    msgId: uniq,
    transactionId: h.transactionId || uniq,
  }));
}

async function sendHalf(producer, brokerAddr, queueId, name) {
  const uniq = common.newUniqKey();
  const body = `tx-${name}-${Date.now()}`;
  const properties = {
    TAGS: 'TX',
    KEYS: `tx-${name}`,
    WAIT: 'true',
    UNIQ_KEY: uniq,
    TRAN_MSG: 'true',
    PGROUP: producerGroup,
  };
  const request = RemotingCommand.createRequestCommand(SEND_MESSAGE_V2, {
    a: producerGroup,
    b: args.topic,
    c: 'TBW102',
    d: 4,
    e: queueId,
    f: 0x4,
    g: Date.now(),
    h: 0,
    i: MessageDecoder.messageProperties2String(properties),
    j: 0,
    k: false,
  });
  request.body = Buffer.from(body);
  const response = await producer._mqClient.invoke(brokerAddr, request, 5000);
  return { uniq, body, queueId, response: { code: response.code, remark: response.remark, extFields: response.extFields } };
}

async function main() {
  const producer = new Producer(common.clientOptions(args.namesrv, { producerGroup }));
  producer.on('error', err => run.clientError('producer', err));
  await producer.ready();
  // ali-ons cannot auto-create topics (see common.ensureTopic): create it like `mqadmin updateTopic`.
  await common.ensureTopic(run, producer._mqClient, args.topic, 4);
  const mqClient = producer._mqClient;
  common.watchServerRequests(run, mqClient, (command, address) => {
    if (command.code === CHECK_TRANSACTION_STATE) {
      return onCheck(mqClient, command, address);
    }
    return null;
  });

  // Create the topic and learn the route with a plain ali-ons send.
  const warm = await producer.send(new Message(args.topic, 'WARM', 'warm-up'));
  run.check('warm-up send SEND_OK', warm.sendStatus === 'SEND_OK', warm);
  const brokerName = warm.messageQueue.brokerName;
  const brokerAddr = mqClient.findBrokerAddressInPublish(brokerName);
  run.note('broker', { brokerName, brokerAddr });
  // Make sure the producer group is registered before any check can be due.
  await mqClient.sendHeartbeatToAllBroker();

  const consumed = [];
  const consumer = new Consumer(common.clientOptions(args.namesrv, {
    consumerGroup: args.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
  }));
  consumer.on('error', err => run.clientError('consumer', err));
  consumer.subscribe(args.topic, 'TX', async msg => {
    consumed.push({
      at: Date.now(),
      uniq: msg.properties.UNIQ_KEY,
      topic: msg.topic,
      queueId: msg.queueId,
      sysFlag: msg.sysFlag,
      preparedTransactionOffset: msg.preparedTransactionOffset,
      body: msg.body ? msg.body.toString() : null,
      properties: Object.assign({}, msg.properties),
    });
  });
  await consumer.ready();

  // Half messages, then the producer's first decision.
  let queueId = 0;
  for (const name of Object.keys(txs)) {
    const tx = txs[name];
    tx.name = name;
    tx.checks = [];
    const half = await sendHalf(producer, brokerAddr, queueId, name);
    queueId = (queueId + 1) % 4;
    tx.half = half;
    byUniq.set(half.uniq, tx);
    const h = half.response.extFields || {};
    if (!run.check(`${name}: half SEND_MESSAGE_V2 answered SUCCESS with msgId/queueId/queueOffset`,
      half.response.code === 0 && /^[0-9A-F]{32}$/.test(h.msgId || '') && h.queueId !== undefined &&
      h.queueOffset !== undefined, half.response)) {
      continue;
    }
    run.check(`${name}: half response queueId is the requested (real) queue`, String(h.queueId) === String(half.queueId),
      { requested: half.queueId, got: h.queueId });
    run.check(`${name}: half response transactionId (if present) is the UNIQ_KEY`,
      h.transactionId === undefined || h.transactionId === half.uniq, { uniq: half.uniq, transactionId: h.transactionId });
    tx.commitLogOffset = commitLogOffsetOf(h.msgId);
    tx.tranStateTableOffset = Number(h.queueOffset);
    await mqClient.invokeOneway(brokerAddr, endTransactionCommand({
      tranStateTableOffset: tx.tranStateTableOffset,
      commitLogOffset: tx.commitLogOffset,
      commitOrRollback: tx.first,
      fromTransactionCheck: false,
      msgId: half.uniq,
      transactionId: h.transactionId || half.uniq,
    }));
  }
  run.note('halves', Object.values(txs).map(tx => ({
    name: tx.name, uniq: tx.half && tx.half.uniq, response: tx.half && tx.half.response,
    commitLogOffset: tx.commitLogOffset, tranStateTableOffset: tx.tranStateTableOffset,
  })));

  const delivered = name => consumed.filter(c => c.uniq === (txs[name].half && txs[name].half.uniq));
  const committedOnTime = await common.waitFor(() => delivered('COMMIT').length >= 1, 20000);
  run.check('COMMIT: committed message consumed within 20 s', committedOnTime, consumed.length);
  const checkedCommit = await common.waitFor(() => delivered('UNKNOWN_COMMIT').length >= 1, 30000);
  run.check('UNKNOWN_COMMIT: check-back then commit, consumed within 30 s', checkedCommit,
    { checks: txs.UNKNOWN_COMMIT.checks.length, consumed: consumed.length });
  await common.waitFor(() => txs.UNKNOWN_ROLLBACK.checks.length >= 1, 15000);
  // Let further check passes run: nothing else may show up.
  await common.sleep(SETTLE_MS);

  run.note('consumed', consumed.map(c => ({ uniq: c.uniq, topic: c.topic, queueId: c.queueId, sysFlag: c.sysFlag,
    preparedTransactionOffset: c.preparedTransactionOffset, body: c.body })));
  run.note('checks', Object.values(txs).map(tx => ({ name: tx.name, checks: tx.checks })));
  if (unmatchedChecks.length) run.note('unmatchedChecks', unmatchedChecks);

  run.check('COMMIT: consumed exactly once', delivered('COMMIT').length === 1, delivered('COMMIT').length);
  run.check('ROLLBACK: never consumed', delivered('ROLLBACK').length === 0, delivered('ROLLBACK').length);
  run.check('UNKNOWN_COMMIT: consumed exactly once', delivered('UNKNOWN_COMMIT').length === 1,
    delivered('UNKNOWN_COMMIT').length);
  run.check('UNKNOWN_ROLLBACK: never consumed', delivered('UNKNOWN_ROLLBACK').length === 0,
    delivered('UNKNOWN_ROLLBACK').length);
  run.check('COMMIT and ROLLBACK (resolved at once) were never checked',
    txs.COMMIT.checks.length === 0 && txs.ROLLBACK.checks.length === 0,
    { COMMIT: txs.COMMIT.checks.length, ROLLBACK: txs.ROLLBACK.checks.length });
  run.check('UNKNOWN_COMMIT and UNKNOWN_ROLLBACK were checked back',
    txs.UNKNOWN_COMMIT.checks.length >= 1 && txs.UNKNOWN_ROLLBACK.checks.length >= 1,
    { UNKNOWN_COMMIT: txs.UNKNOWN_COMMIT.checks.length, UNKNOWN_ROLLBACK: txs.UNKNOWN_ROLLBACK.checks.length });
  run.check('every check-back named a known transaction', unmatchedChecks.length === 0, unmatchedChecks.length);

  for (const name of [ 'UNKNOWN_COMMIT', 'UNKNOWN_ROLLBACK' ]) {
    const tx = txs[name];
    const c = tx.checks[0];
    if (!c) continue;
    const h = c.header;
    run.check(`${name}: check header has tranStateTableOffset, commitLogOffset, msgId/transactionId = UNIQ_KEY`,
      h.tranStateTableOffset !== undefined && h.commitLogOffset !== undefined &&
      (h.msgId === tx.half.uniq || h.transactionId === tx.half.uniq), h);
    run.check(`${name}: check body decodes as the message on its real topic/queue with PGROUP`,
      c.body && c.body.topic === args.topic && String(c.body.queueId) === String(tx.half.queueId) &&
      c.body.pgroup === producerGroup && c.body.body === tx.half.body, c.body);
  }

  for (const name of [ 'COMMIT', 'UNKNOWN_COMMIT' ]) {
    const tx = txs[name];
    const d = delivered(name)[0];
    if (!d) continue;
    run.check(`${name}: committed message on the real topic and queue with its body`,
      d.topic === args.topic && String(d.queueId) === String(tx.half.queueId) && d.body === tx.half.body,
      { topic: d.topic, queueId: d.queueId, expectedQueueId: tx.half.queueId, body: d.body });
    run.check(`${name}: committed record has transaction type COMMIT (sysFlag & 0xC == 0x8)`,
      (d.sysFlag & 0xC) === 0x8, { sysFlag: d.sysFlag });
    const halfOffsets = [ tx.commitLogOffset ].concat(tx.checks.map(c => Number(c.header.commitLogOffset)));
    run.check(`${name}: committed record's prepared-transaction offset is the half record's commit-log offset`,
      halfOffsets.includes(d.preparedTransactionOffset),
      { preparedTransactionOffset: d.preparedTransactionOffset, halfOffsets });
  }

  const endOneways = run.oneway[String(END_TRANSACTION)] || 0;
  run.note('endTransactionSent', endOneways);

  await common.closeAll(run, [ consumer, producer ]);
}

main().then(
  () => run.finish(run.failures.length ? 'failed' : 'ok'),
  err => {
    run.fail(`crashed: ${err && err.stack}`);
    run.finish('crashed');
  }
);
