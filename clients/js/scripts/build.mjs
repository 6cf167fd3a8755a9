// Builds dist/index.js (ESM, minified, one file, no dependencies) with
// esbuild and dist/*.d.ts with tsc, which also typechecks. With --size it
// prints the bundle's size minified and gzipped and fails over the budget.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

// The core bundle's budget, minified and gzipped (issue 19: 8 kB).
export const BUDGET = 8000

process.chdir(new URL('..', import.meta.url).pathname)
await build({
  entryPoints: ['src/index.ts'],
  outfile: 'dist/index.js',
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  legalComments: 'none',
})
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
