// Builds dist/index.js (ESM, minified, one file, no dependencies) and
// dist/react.js (the hooks) with esbuild, and dist/*.d.ts with tsc, which also typechecks. With --size it
// prints the bundle's size minified and gzipped and fails over the budget;
// with --pages it also builds the test pages.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

// The core bundle's budget, minified and gzipped (issue 19: 8 kB).
export const BUDGET = 8000

process.chdir(new URL('..', import.meta.url).pathname)
const options = { bundle: true, format: 'esm', target: 'es2020', minify: true, sourcemap: true, legalComments: 'none' }
await build({ ...options, entryPoints: ['src/index.ts'], outfile: 'dist/index.js' })
// The React hooks: a separate entry (@trine/client/react); react stays the app's.
await build({ ...options, entryPoints: ['src/react.ts'], outfile: 'dist/react.js', external: ['react'] })
// Test pages (compat/jsclient_test.go): bundled with React, from src.
if (process.argv.includes('--pages'))
  await build({ ...options, entryPoints: ['tests/pages/strict.jsx'], outfile: 'dist/pages/strict.js', jsx: 'automatic', minify: false,
    // StrictMode mounts twice in development builds only.
    define: { 'process.env.NODE_ENV': '"development"' } })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', '.'], { stdio: 'inherit' })

if (process.argv.includes('--size')) {
  const js = readFileSync('dist/index.js')
  const gz = gzipSync(js, { level: 9 }).length
  console.log(`dist/index.js: ${js.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET})`)
  if (gz > BUDGET) {
    console.error(`over budget by ${gz - BUDGET} bytes`)
    process.exit(1)
  }
}
