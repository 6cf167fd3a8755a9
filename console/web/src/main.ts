// The console: one page per part of a running engine, each drawn from the
// engine's public functions (called through the iii listener with the
// console user's token) and live groups from the stream listener.
import { connect, ClientError, type Client } from '@trine/client'
import { fill, h } from './dom'
import { functionsPage, workersPage, triggersPage } from './engine'
import { streamsPage } from './streams'
import { queuesPage, cronPage } from './queues'
import { figuresPage } from './figures'

/** Ctx is what a page gets: the client, and calls that never throw into the console. */
export interface Ctx {
  client: Client
  /** call calls a function; it rejects with a ClientError (code, message). */
  call<R = any>(fn: string, payload?: unknown): Promise<R>
  /** has reports whether function fn is registered (and visible to this user). */
  has(fn: string): Promise<boolean>
}

/** A page draws into root and returns what stops it. */
export type Page = (ctx: Ctx, root: HTMLElement) => () => void

const pages: Record<string, Page> = {
  functions: functionsPage,
  workers: workersPage,
  triggers: triggersPage,
  streams: streamsPage,
  queues: queuesPage,
  cron: cronPage,
  figures: figuresPage,
}

/** errorText is how a failed call reads: its code, then its message. */
export const errorText = (e: unknown) => (e instanceof ClientError ? `${e.code}: ${e.message}` : String(e))

async function boot() {
  const main = document.getElementById('main')!
  // The settings, the token among them, come in the document only (no
  // fetch can read them); the listeners are on the host the page came from.
  const meta = document.querySelector('meta[name="trine-console"]')!
  const cfg = JSON.parse(meta.getAttribute('content') || '{}')
  meta.remove()
  const url = (scheme: string, port?: number) =>
    port ? `${scheme}${cfg.tls ? 's' : ''}://${location.hostname}:${port}` : ''
  const stream = url('http', cfg.stream_port)
  const iii = url('ws', cfg.iii_port)
  const tok = cfg.token ? 'token=' + encodeURIComponent(cfg.token) : ''
  const callUrl = iii && (tok ? iii + '/?' + tok : iii)
  const client = connect(stream, { token: cfg.token || undefined, callUrl })
  const state = document.getElementById('state')!
  client.on('state', (s: string) => {
    state.textContent = s
    state.className = 'badge ' + s
  })
  client.on('error', () => {}) // shown where it matters: a page's call fails with it
  let known: Promise<Set<string>> | undefined
  let knownAt = 0
  const ctx: Ctx = {
    client,
    // The iii listener spells some codes as iii does (FORBIDDEN): shown
    // as the engine's snake_case.
    call: (fn, payload) =>
      client.call<any>(fn, payload ?? {}, { timeout: 10_000 }).catch((e) => {
        throw e instanceof ClientError ? new ClientError(e.code.toLowerCase(), e.message) : e
      }),
    has(fn) {
      if (!known || Date.now() - knownAt > 5000) {
        knownAt = Date.now()
        known = ctx.call('engine::functions::list', {}).then(
          (r) => new Set<string>(r.functions.map((f: any) => f.function_id)),
          () => new Set<string>(),
        )
      }
      return known.then((s) => s.has(fn))
    },
  }
  let stop = () => {}
  const route = () => {
    const name = location.hash.slice(1) || 'functions'
    const page = pages[name] || pages.functions
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('on', a.getAttribute('href') === '#' + name)
    stop()
    const root = h('div', { id: 'page-' + name })
    fill(main, root)
    stop = page(ctx, root)
  }
  addEventListener('hashchange', route)
  route()
  ;(window as any).trineConsole = ctx
}

boot().catch((e) => fill(document.getElementById('main')!, h('p', { class: 'error' }, 'console: ' + errorText(e))))
