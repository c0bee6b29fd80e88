#!/usr/bin/env node
// The `conductor` command: runs the CLI compiled into dist/ (Node 20 cannot run the TypeScript
// sources). dist/ is built by `npm ci` / `npm install` (the root package's install script runs
// `npm run build`); after changing the sources, run `npm run build` again.
const ENTRY = '../dist/controller/cli/main.js';

let cli;
try {
  cli = await import(ENTRY);
} catch (err) {
  if (
    err?.code !== 'ERR_MODULE_NOT_FOUND' ||
    !String(err.message).includes('dist/controller/cli/main.js')
  ) {
    throw err;
  }
  process.stderr.write(
    'error: the conductor CLI is not built (dist/ is missing): run `npm run build`\n',
  );
  process.exit(1);
}
// The process ends on its own once the command is done: every command releases what it opened
// (timers, watches, exit waits, servers), so nothing is left to keep it alive —
// test/integration/manager-lifecycle.test.ts checks `conductor up` does.
process.exitCode = await cli.main(process.argv.slice(2));
