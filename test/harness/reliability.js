'use strict';
// The reliability record: every fault-injection, hostile-input, canary and memory test
// appends one row here while it runs, and scripts/reliability-report.js turns the rows of a
// whole test run into docs/reliability.md and fails CI when a figure regresses against
// docs/reliability-baseline.json. Rows are JSON lines, so jest workers and the real-n8n run
// (separate processes) can all append to the same file.
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const DIR = process.env.MAM_RELIABILITY_DIR || path.join(ROOT, '.cache', 'reliability');
const FILE = path.join(DIR, 'rows.jsonl');

const KINDS = ['fault', 'hostile', 'canary', 'memory'];

/**
 * @typedef {object} ReliabilityRow
 * @property {string} transport   'smtp' | 'imap' | 'identity' | 'n8n' | later 'graph', 'ews'
 * @property {'fault'|'hostile'|'canary'|'memory'} kind
 * @property {string} name        unique within transport + kind, stable across runs (the baseline key)
 * @property {boolean} survived   the package did what it promises (recovered, or failed clearly without loss)
 * @property {string} behaviour   one line: what the package did
 * @property {number} [sent]      messages offered (fault rows)
 * @property {number} [delivered] messages counted at the peer
 * @property {number} [lost]      messages accepted by us for sending/reading that never arrived / were never emitted
 * @property {number} [duplicated] messages the peer received (or the trigger emitted) more than once
 * @property {number} [deliveryUnknown] the documented ambiguous case (connection lost after the end of DATA)
 * @property {boolean} [allowsDeliveryUnknown] this scenario IS that documented case: the report
 *   accepts deliveryUnknown > 0 only on rows that set this
 * @property {number} [cases]     inputs tried (hostile / property-based rows)
 * @property {number} [hits]      canary occurrences found (canary rows)
 * @property {number} [value]     a measured figure (memory rows), with unit
 * @property {string} [unit]
 * @property {string} [n8n]       n8n version, for rows from a real n8n run
 */

/** @param {ReliabilityRow} row */
function record(row) {
	if (!row || typeof row.transport !== 'string' || !KINDS.includes(row.kind) || typeof row.name !== 'string') {
		throw new Error(`reliability row needs transport, kind (${KINDS.join('/')}) and name: ${JSON.stringify(row)}`);
	}
	if (typeof row.survived !== 'boolean' || typeof row.behaviour !== 'string') {
		throw new Error(`reliability row "${row.name}" needs survived (boolean) and behaviour (text)`);
	}
	fs.mkdirSync(DIR, { recursive: true });
	fs.appendFileSync(FILE, `${JSON.stringify({ ...row, at: new Date().toISOString() })}\n`);
}

/** @returns {ReliabilityRow[]} every row recorded since the last reset */
function readRows() {
	if (!fs.existsSync(FILE)) return [];
	return fs
		.readFileSync(FILE, 'utf8')
		.split('\n')
		.filter(Boolean)
		.map((line) => JSON.parse(line));
}

/** Called once at the start of a full test run. */
function reset() {
	fs.rmSync(FILE, { force: true });
}

module.exports = { record, readRows, reset, FILE, KINDS };
