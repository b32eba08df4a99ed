'use strict';
// Turns the reliability rows of a test run (test/harness/reliability.js) into
// docs/reliability.md and fails (exit 1) when a figure regresses against the committed
// docs/reliability-baseline.json. scripts/test-all.sh resets the rows at its start and runs
// this at its end.
//
//   node scripts/reliability-report.js                    report + check against the baseline
//   node scripts/reliability-report.js --update-baseline  report + write the baseline from this run
//   node scripts/reliability-report.js --partial          a run of some test files only: baseline
//                                                         rows it did not record are not missing
//   --out=FILE, --baseline=FILE                           other paths (the report's own tests)
//
// A regression is: a message lost or duplicated; delivery-unknown on a row that does not
// declare that case (allowsDeliveryUnknown: true); a canary hit; a baseline row missing
// (a test was dropped); survived turning false; fewer hostile cases than the baseline; a
// memory figure more than 25 % above the baseline.
const fs = require('node:fs');
const path = require('node:path');

const { readRows, KINDS } = require('../test/harness/reliability');

const ROOT = path.resolve(__dirname, '..');
const MEMORY_TOLERANCE = 0.25;
const DEFAULT_OUT = path.join(ROOT, 'docs', 'reliability.md');
const DEFAULT_BASELINE = path.join(ROOT, 'docs', 'reliability-baseline.json');

/** The baseline key: rows of a real n8n run are told apart by n8n version. */
const keyOf = (row) => `${row.transport}/${row.kind}/${row.name}${row.n8n ? ` [n8n ${row.n8n}]` : ''}`;
const num = (value) => (typeof value === 'number' && Number.isFinite(value) ? value : 0);

/**
 * One row per key. A key recorded twice in one run (a test file run twice) keeps the worse
 * figures, so a repeat can never hide a failure.
 */
function mergeRows(rows) {
	const byKey = new Map();
	for (const row of rows) {
		const key = keyOf(row);
		const seen = byKey.get(key);
		if (!seen) {
			byKey.set(key, { ...row, key });
			continue;
		}
		seen.survived = seen.survived && row.survived;
		for (const figure of ['lost', 'duplicated', 'deliveryUnknown', 'hits', 'value']) {
			if (row[figure] !== undefined) seen[figure] = Math.max(num(seen[figure]), num(row[figure]));
		}
		if (row.cases !== undefined) seen.cases = seen.cases === undefined ? row.cases : Math.min(seen.cases, row.cases);
		if (!row.survived) seen.behaviour = row.behaviour;
		seen.allowsDeliveryUnknown = Boolean(seen.allowsDeliveryUnknown && row.allowsDeliveryUnknown);
	}
	return [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** The figures a baseline keeps per row: what later runs are compared with. */
function baselineEntry(row) {
	const entry = { survived: row.survived };
	if (row.cases !== undefined) entry.cases = row.cases;
	if (row.kind === 'memory' && row.value !== undefined) Object.assign(entry, { value: row.value, unit: row.unit ?? '' });
	if (row.allowsDeliveryUnknown) entry.allowsDeliveryUnknown = true;
	return entry;
}

/** Every regression of this run, as sentences. */
function regressions(rows, baseline, { partial = false } = {}) {
	const found = [];
	if (rows.length === 0) found.push('no reliability rows were recorded: did the tests run?');
	const byKey = new Map(rows.map((row) => [row.key, row]));
	for (const row of rows) {
		const where = row.key;
		if (num(row.lost) > 0) found.push(`${where}: ${row.lost} message(s) lost`);
		// A duplicate is allowed only as the documented resend of a delivery-unknown message
		// under the At Least Once choice (the row declares it, and no more than were unknown).
		const chosen = row.allowsDeliveryUnknown ? Math.min(num(row.duplicated), num(row.deliveryUnknown)) : 0;
		if (num(row.duplicated) > chosen) found.push(`${where}: ${num(row.duplicated) - chosen} message(s) duplicated`);
		if (num(row.deliveryUnknown) > 0 && !row.allowsDeliveryUnknown) {
			found.push(`${where}: ${row.deliveryUnknown} message(s) with unknown delivery on a row that does not declare that case`);
		}
		if (num(row.hits) > 0) found.push(`${where}: ${row.hits} canary hit(s)`);
		const base = baseline.rows?.[row.key];
		if (!base) continue;
		if (base.survived && !row.survived) found.push(`${where}: survived before, not now (${row.behaviour})`);
		if (base.cases !== undefined && num(row.cases) < base.cases) found.push(`${where}: ${num(row.cases)} cases tried, baseline ${base.cases}`);
		if (row.kind === 'memory' && typeof base.value === 'number' && base.value > 0) {
			const limit = base.value * (1 + MEMORY_TOLERANCE);
			if (num(row.value) > limit) {
				found.push(`${where}: ${row.value} ${row.unit ?? ''} is more than ${MEMORY_TOLERANCE * 100} % above the baseline ${base.value} ${base.unit ?? ''}`.replace(/\s+/g, ' '));
			}
		}
	}
	if (!partial) {
		for (const key of Object.keys(baseline.rows ?? {})) {
			if (!byKey.has(key)) found.push(`${key}: in the baseline but not recorded by this run (test dropped or renamed?)`);
		}
	}
	return found;
}

/** Totals for the summary table. */
function summarize(rows) {
	const of = (kind) => rows.filter((r) => r.kind === kind);
	const sum = (list, figure) => list.reduce((total, r) => total + num(r[figure]), 0);
	const memory = of('memory').filter((r) => typeof r.value === 'number');
	const peak = memory.reduce((best, r) => (!best || r.value > best.value ? r : best), null);
	return {
		faults: of('fault').length,
		survived: of('fault').filter((r) => r.survived).length,
		hostileRows: of('hostile').length,
		hostileCases: sum(of('hostile'), 'cases'),
		hostileSurvived: of('hostile').filter((r) => r.survived).length,
		sent: sum(rows, 'sent'),
		lost: sum(rows, 'lost'),
		duplicated: sum(rows, 'duplicated') - chosenDuplicates(rows),
		chosenDuplicates: chosenDuplicates(rows),
		deliveryUnknown: sum(rows, 'deliveryUnknown'),
		canaryChecks: of('canary').length,
		canaryHits: sum(rows, 'hits'),
		peak,
	};
}

/** Resends of delivery-unknown messages the user chose with At Least Once (documented). */
function chosenDuplicates(rows) {
	return rows.reduce((total, r) => total + (r.allowsDeliveryUnknown ? Math.min(num(r.duplicated), num(r.deliveryUnknown)) : 0), 0);
}

const cell = (value) =>
	String(value ?? '')
		.replace(/\\/g, '\\\\')
		.replace(/\|/g, '\\|')
		.replace(/\r?\n/g, ' ')
		.trim();
const yesNo = (value) => (value ? 'yes' : '**no**');
const figure = (row, name) => (row[name] === undefined ? '' : String(row[name]));

const COLUMNS = {
	fault: [
		['Scenario', (r) => r.name],
		['Survived', (r) => yesNo(r.survived)],
		['Sent', (r) => figure(r, 'sent')],
		['Delivered', (r) => figure(r, 'delivered')],
		['Lost', (r) => figure(r, 'lost')],
		['Duplicated', (r) => figure(r, 'duplicated')],
		['Delivery unknown', (r) => figure(r, 'deliveryUnknown') + (r.allowsDeliveryUnknown ? ' (documented)' : '')],
		['What the package did', (r) => r.behaviour],
	],
	hostile: [
		['Input', (r) => r.name],
		['Survived', (r) => yesNo(r.survived)],
		['Cases', (r) => figure(r, 'cases')],
		['What the package did', (r) => r.behaviour],
	],
	canary: [
		['Where', (r) => r.name],
		['Clean', (r) => yesNo(r.survived)],
		['Hits', (r) => figure(r, 'hits')],
		['Checked', (r) => r.behaviour],
	],
	memory: [
		['Measure', (r) => r.name],
		['Within bounds', (r) => yesNo(r.survived)],
		['Value', (r) => (r.value === undefined ? '' : `${r.value} ${r.unit ?? ''}`.trim())],
		['What was measured', (r) => r.behaviour],
	],
};

function table(header, lines) {
	return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...lines.map((l) => `| ${l.map(cell).join(' | ')} |`)].join('\n');
}

function versionOf(pkg) {
	try {
		return require(path.join(ROOT, 'node_modules', pkg, 'package.json')).version;
	} catch {
		return null;
	}
}

function renderMarkdown(rows, found, { date, baselinePath }) {
	const s = summarize(rows);
	const n8nSeen = [...new Set(rows.map((r) => r.n8n).filter(Boolean))].sort();
	const core = versionOf('n8n-core');
	const versions = [
		...n8nSeen.map((v) => `n8n ${v} (real n8n run)`),
		...(core ? [`n8n-core ${core} (execution engine of the jest tests)`] : []),
	];
	const peak = s.peak ? `${s.peak.value} ${s.peak.unit ?? ''} (${s.peak.transport}: ${s.peak.name})`.replace(/\s+\)/, ')') : 'not measured';
	const out = [
		'<!-- Generated by scripts/reliability-report.js from the rows this test run recorded (test/harness/reliability.js). Do not edit: run `npm test`. -->',
		'# Reliability report',
		'',
		`Written by the test run on ${date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} from ${rows.length} recorded scenarios; compared with \`${path.relative(ROOT, baselinePath)}\`.`,
		`n8n versions seen: ${versions.length ? versions.join(', ') : 'none recorded'}.`,
		'',
		'Lost and duplicated messages are counted at the peer (what the SMTP peer received, what Dovecot holds, what the fake Graph recorded as delivered or holds, what the nodes emitted), never taken from constants.',
		'',
		'## Summary',
		'',
		table(
			['Figure', 'Value'],
			[
				['Faults injected', s.faults],
				['Faults survived (recovered, or failed clearly without loss)', `${s.survived} of ${s.faults}`],
				['Hostile inputs tried', `${s.hostileCases} cases in ${s.hostileRows} scenarios (${s.hostileSurvived} survived)`],
				['Messages lost', s.lost],
				['Messages duplicated', s.duplicated],
				['Resent by the documented At Least Once choice (delivery unknown)', s.chosenDuplicates],
				['Delivery unknown (the documented ambiguous case)', s.deliveryUnknown],
				['Canary hits', `${s.canaryHits} in ${s.canaryChecks} checks`],
				['Peak memory', peak],
				['Regressions against the baseline', found.length],
			],
		),
		'',
	];
	if (found.length) out.push('## Regressions', '', ...found.map((f) => `- ${f.replace(/\r?\n/g, ' ')}`), '');
	const groups = new Map();
	for (const row of rows) {
		const group = `${row.transport} / ${row.kind}`;
		if (!groups.has(group)) groups.set(group, []);
		groups.get(group).push(row);
	}
	const order = (g) => KINDS.indexOf(g.split(' / ')[1]);
	for (const group of [...groups.keys()].sort((a, b) => order(a) - order(b) || a.localeCompare(b))) {
		const list = groups.get(group);
		const columns = COLUMNS[list[0].kind];
		const withN8n = list.some((r) => r.n8n);
		const header = [...columns.map(([title]) => title), ...(withN8n ? ['n8n'] : [])];
		out.push(`## ${group}`, '', table(header, list.map((r) => [...columns.map(([, value]) => value(r)), ...(withN8n ? [r.n8n ?? ''] : [])])), '');
	}
	return out.join('\n');
}

function readBaseline(file) {
	if (!fs.existsSync(file)) return { rows: {} };
	return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function writeBaseline(file, rows, date) {
	const baseline = {
		comment: 'Written by `node scripts/reliability-report.js --update-baseline` from a full test run; the report fails CI when a later run regresses against these figures.',
		updated: date.toISOString().slice(0, 10),
		rows: Object.fromEntries(rows.map((row) => [row.key, baselineEntry(row)])),
	};
	fs.writeFileSync(file, `${JSON.stringify(baseline, null, '\t')}\n`);
}

/**
 * @param {object} [options]
 * @param {object[]} [options.rows] rows (default: those of this run)
 * @param {string} [options.out] markdown path (default docs/reliability.md)
 * @param {string} [options.baseline] baseline path (default docs/reliability-baseline.json)
 * @param {boolean} [options.updateBaseline]
 * @param {boolean} [options.partial]
 * @param {Date} [options.date]
 * @returns {{rows: object[], regressions: string[], markdown: string}}
 */
function report(options = {}) {
	const date = options.date ?? new Date();
	const out = options.out ?? DEFAULT_OUT;
	const baselinePath = options.baseline ?? DEFAULT_BASELINE;
	const rows = mergeRows(options.rows ?? readRows());
	let found;
	if (options.updateBaseline) {
		// the new baseline still may not hold losses, duplicates or canary hits
		found = regressions(rows, { rows: {} }, { partial: true });
		writeBaseline(baselinePath, rows, date);
	} else {
		found = regressions(rows, readBaseline(baselinePath), { partial: options.partial });
	}
	const markdown = renderMarkdown(rows, found, { date, baselinePath });
	fs.mkdirSync(path.dirname(out), { recursive: true });
	fs.writeFileSync(out, `${markdown}\n`);
	return { rows, regressions: found, markdown };
}

if (require.main === module) {
	const flags = new Set();
	const paths = {};
	for (const arg of process.argv.slice(2)) {
		const [name, value] = arg.split(/=(.*)/s);
		if (['--update-baseline', '--partial'].includes(arg)) flags.add(arg);
		else if (['--out', '--baseline'].includes(name) && value) paths[name.slice(2)] = path.resolve(value);
		else {
			console.error(`unknown option ${arg}; use --update-baseline, --partial, --out=FILE, --baseline=FILE`);
			process.exit(2);
		}
	}
	const result = report({ updateBaseline: flags.has('--update-baseline'), partial: flags.has('--partial'), ...paths });
	const s = summarize(result.rows);
	console.log(
		`reliability: ${result.rows.length} scenarios; faults ${s.survived}/${s.faults} survived; hostile cases ${s.hostileCases}; lost ${s.lost}; duplicated ${s.duplicated}; delivery unknown ${s.deliveryUnknown}; canary hits ${s.canaryHits}`,
	);
	if (flags.has('--update-baseline')) console.log(`baseline written: ${path.relative(process.cwd(), paths.baseline ?? DEFAULT_BASELINE)}`);
	for (const line of result.regressions) console.log(`REGRESSION ${line}`);
	console.log(`${path.relative(process.cwd(), paths.out ?? DEFAULT_OUT)} written; ${result.regressions.length} regression(s)`);
	process.exit(result.regressions.length ? 1 : 0);
}

module.exports = { report, regressions, mergeRows, summarize, keyOf };
