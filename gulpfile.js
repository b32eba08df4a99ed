// Copies the static files n8n loads next to the compiled code: icons and codex JSON.
const path = require('path');
const { src, dest, task } = require('gulp');

function copyStatic() {
	return src(['icons/**/*.{svg,png}', 'nodes/**/*.{svg,png,json}', 'credentials/**/*.{svg,png}'], {
		base: '.',
		encoding: false,
	}).pipe(dest(path.resolve('dist')));
}

task('build:icons', copyStatic);
