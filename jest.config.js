/** Jest runs the TypeScript tests in test/ against real peers the suite starts itself. */
module.exports = {
	preset: 'ts-jest',
	testEnvironment: 'node',
	roots: ['<rootDir>/test'],
	testMatch: ['**/*.test.ts'],
	setupFiles: ['<rootDir>/test/harness/env.js'],
	setupFilesAfterEnv: ['<rootDir>/test/harness/teardown.ts'],
	testTimeout: 60_000,
	transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
};
