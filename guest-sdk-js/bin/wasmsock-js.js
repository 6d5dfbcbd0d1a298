#!/usr/bin/env node
// wasmsock-js: build and test wasmsock plugins written in JavaScript or TypeScript.
//
//   wasmsock-js types                     generate the contract's TypeScript types from wit/ (jco)
//   wasmsock-js build [DIR] [-o OUT]      type-check (TypeScript), bundle (esbuild), componentize
//   wasmsock-js test [DIR]                run DIR/test/*.test.{js,ts} in Node against the TestHost
//
// The contract is read from the wit/ directory next to this SDK (the repository's), or from
// WASMSOCK_WIT; nothing of it is copied by hand, so new exports and host functions reach plugins
// at their next build.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SDK = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORLD = 'plugin';
// Plugins get no fetch() and no incoming-HTTP handler: the host links neither.
const DISABLED = ['http', 'fetch-event'];

function die(msg) {
  console.error(`wasmsock-js: ${msg}`);
  process.exit(1);
}

function witDir() {
  const dir = process.env.WASMSOCK_WIT ? resolve(process.env.WASMSOCK_WIT) : resolve(SDK, '..', 'wit');
  if (!existsSync(join(dir, 'wasmsock.wit'))) die(`no contract at ${dir} (set WASMSOCK_WIT to the wit/ directory)`);
  return dir;
}

function bin(pkg, rel) {
  return join(SDK, 'node_modules', pkg, rel);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) die(`cannot run ${cmd}: ${r.error.message}`);
  if (r.signal) die(`${cmd} ${args[0] ?? ''} was killed by ${r.signal}`);
  return r.status ?? 1;
}

/** Generates the contract's types into <sdk>/types (jco guest-types). */
function types() {
  const out = join(SDK, 'types');
  rmSync(out, { recursive: true, force: true });
  const jco = bin('@bytecodealliance/jco', 'src/jco.js');
  if (!existsSync(jco)) die(`the SDK's tools are not installed: run \`npm install\` in ${SDK}`);
  if (run(process.execPath, [jco, 'guest-types', witDir(), '-n', WORLD, '-o', out, '-q']) !== 0) {
    die('generating the contract types failed');
  }
  return out;
}

function project(dir) {
  const pkgFile = join(dir, 'package.json');
  const pkg = existsSync(pkgFile) ? JSON.parse(readFileSync(pkgFile, 'utf8')) : {};
  const candidates = [pkg.wasmsock?.entry, 'src/plugin.ts', 'src/plugin.js', 'plugin.ts', 'plugin.js'].filter(Boolean);
  const entry = candidates.map((c) => join(dir, c)).find((p) => existsSync(p));
  if (!entry) die(`${dir}: no plugin entry (src/plugin.ts, src/plugin.js, or "wasmsock": {"entry": ...} in package.json)`);
  const name = (pkg.name ?? basename(resolve(dir))).replace(/^@[^/]+\//, '');
  return { pkg, entry, name };
}

async function esbuild() {
  return import(pathToFileURL(bin('esbuild', 'lib/main.js')).href);
}

/** Resolves `wasmsock-sdk` to this SDK wherever the plugin lives; the host interface stays an import. */
function bundleOptions() {
  return {
    bundle: true,
    format: 'esm',
    target: 'es2022',
    logLevel: 'warning',
    alias: {
      'wasmsock-sdk/testing': join(SDK, 'src', 'testing.js'),
      'wasmsock-sdk': join(SDK, 'src', 'index.js'),
    },
    external: ['wasmsock:*'],
  };
}

function typecheck(dir, entry) {
  const tsc = bin('typescript', 'bin/tsc');
  const tsconfig = join(dir, 'tsconfig.json');
  const args = existsSync(tsconfig)
    ? ['-p', tsconfig, '--noEmit']
    : ['--noEmit', '--strict', '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler', entry];
  if (run(process.execPath, [tsc, ...args]) !== 0) die('type errors (see above)');
}

async function build(dir, out) {
  const { entry, name } = project(dir);
  types();
  if (entry.endsWith('.ts')) typecheck(dir, entry);
  const work = join(dir, 'dist', '.build');
  mkdirSync(work, { recursive: true });
  const bundled = join(work, `${name}.js`);
  const { build: bundle } = await esbuild();
  await bundle({ ...bundleOptions(), entryPoints: [entry], outfile: bundled, platform: 'neutral' });
  out = resolve(out ?? join(dir, 'dist', `${name}.wasm`));
  mkdirSync(dirname(out), { recursive: true });
  const { componentize } = await import(
    pathToFileURL(bin('@bytecodealliance/componentize-js', 'src/componentize.js')).href
  );
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: bundled,
    witPath: witDir(),
    worldName: WORLD,
    disableFeatures: DISABLED,
  });
  writeFileSync(out, component);
  console.error(`wasmsock-js: built ${out} (${component.length} bytes, ${Date.now() - started} ms)`);
}

async function test(dir) {
  const testDir = join(dir, 'test');
  const files = existsSync(testDir)
    ? readdirSync(testDir).filter((f) => /\.test\.(m?js|ts)$/.test(f)).map((f) => join(testDir, f))
    : [];
  if (files.length === 0) die(`${dir}: no tests (test/*.test.js or test/*.test.ts)`);
  const work = join(dir, 'dist', '.test');
  rmSync(work, { recursive: true, force: true });
  const { build: bundle } = await esbuild();
  const outs = [];
  for (const f of files) {
    const outfile = join(work, basename(f).replace(/\.(m?js|ts)$/, '.mjs'));
    await bundle({ ...bundleOptions(), entryPoints: [f], outfile, platform: 'node', external: ['wasmsock:*', 'node:*'] });
    outs.push(outfile);
  }
  const register = pathToFileURL(join(SDK, 'src', 'register.js')).href;
  process.exit(run(process.execPath, ['--import', register, '--test', ...outs]));
}

const [cmd, ...rest] = process.argv.slice(2);
const outAt = rest.indexOf('-o');
const out = outAt >= 0 ? rest[outAt + 1] : undefined;
const positional = rest.filter((_, i) => i !== outAt && i !== outAt + 1 || outAt < 0);
const dir = resolve(positional[0] ?? '.');
switch (cmd) {
  case 'types':
    console.log(types());
    break;
  case 'build':
    await build(dir, out);
    break;
  case 'test':
    await test(dir);
    break;
  default:
    die('usage: wasmsock-js types | build [DIR] [-o OUT.wasm] | test [DIR]');
}
