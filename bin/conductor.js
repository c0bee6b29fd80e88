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
// Exit as soon as the command is done: a command may leave handles behind it does not own (a
// `logs -f` ended by Ctrl-C still has the runtime's wait for the container's exit pending).
// stdout and stderr are synchronous on Linux for files, pipes and terminals, so nothing is lost.
process.exit(await cli.main(process.argv.slice(2)));
