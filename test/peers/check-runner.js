'use strict';
// The tiny TAP-like runner the self-check scripts and the real-n8n run share: named checks,
// "ok"/"not ok" lines, and the closing "N passed, N failed" line CI reads.

/** @param {{ stackLines?: number, timed?: boolean }} [options] */
function createChecks({ stackLines = 12, timed = false } = {}) {
	const counts = { passed: 0, failed: 0 };
	async function check(name, fn) {
		const started = Date.now();
		try {
			await fn();
			counts.passed++;
			console.log(`ok - ${name}${timed ? ` (${Date.now() - started} ms)` : ''}`);
		} catch (error) {
			counts.failed++;
			const text = String(error && error.stack ? error.stack : error).split('\n').slice(0, stackLines).join('\n    ');
			console.log(`not ok - ${name}\n    ${text}`);
		}
	}
	return { check, counts };
}

module.exports = { createChecks };
