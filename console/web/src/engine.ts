// Functions, Workers and Triggers: the engine's own listings.
import type { Ctx, Page } from './main'
import { errorText } from './main'
import { ago, badge, every, POLL_MS, fill, h, json, short, table } from './dom'

export const functionsPage: Page = (ctx, root) => {
  const list = h('div')
  const info = h('div', { class: 'muted' }, 'Pick a function to see its metadata.')
  const id = h('input', { id: 'call-fn', placeholder: 'function id', size: 40 })
  const payload = h('textarea', { id: 'call-payload', spellcheck: false }, '{}') as HTMLTextAreaElement
  const out = h('div', { id: 'call-result' })
  const run = async () => {
    fill(out, h('span', { class: 'muted' }, 'calling…'))
    let data: unknown
    try {
      data = JSON.parse(payload.value || 'null')
    } catch (e) {
      return fill(out, h('p', { class: 'error' }, 'the payload is not JSON: ' + (e as Error).message))
    }
    const t0 = performance.now()
    try {
      const r = await ctx.call(id.value.trim(), data)
      fill(out, h('p', { class: 'ok' }, `ok in ${(performance.now() - t0).toFixed(1)} ms`), json(r))
    } catch (e: any) {
      fill(out, h('p', { class: 'error', 'data-code': e.code || 'error' }, errorText(e)))
    }
  }
  const pick = async (fn: string) => {
    id.value = fn
    try {
      fill(info, json(await ctx.call('engine::functions::info', { function_id: fn })))
    } catch (e) {
      fill(info, h('p', { class: 'error' }, errorText(e)))
    }
  }
  fill(
    root,
    h('section', {}, h('h2', {}, 'Call a function'), h('div', { class: 'row' }, id, h('button', { id: 'call-run', onclick: run }, 'Call')), payload, out),
    h('section', {}, h('h2', {}, 'Functions'), list),
    h('section', {}, h('h2', {}, 'Metadata'), info),
  )
  return every(POLL_MS, async () => {
    const r = await ctx.call('engine::functions::list', {})
    fill(
      list,
      table(['function', 'replicas', 'workers', 'description'], r.functions, (f: any) => [
        h('code', {}, f.function_id),
        f.builtin ? h('span', { class: 'muted' }, 'built-in') : f.replicas,
        f.builtin ? '' : `${f.worker_name} (${f.workers.length})`,
        h('span', { class: 'muted' }, f.description || ''),
      ], { onpick: (f: any) => pick(f.function_id), picked: (f: any) => f.function_id === id.value }),
    )
  })
}

export const workersPage: Page = (ctx, root) =>
  every(POLL_MS, async () => {
    const r = await ctx.call('engine::workers::list', {})
    fill(
      root,
      h(
        'section',
        {},
        h('h2', {}, `Workers (${r.workers.length})`),
        table(['worker', 'runtime', 'transport', 'identity', 'address', 'serves', 'in flight', 'connected'], r.workers, (w: any) => [
          h('div', {}, h('strong', {}, w.name || '(unnamed)'), h('div', { class: 'muted' }, w.id)),
          `${w.runtime || ''} ${w.version || ''}`,
          w.transport || '',
          w.identity || h('span', { class: 'muted' }, 'none'),
          w.addr || '',
          h('div', {}, (w.functions || []).map((f: string) => h('div', {}, h('code', {}, f))), w.triggers?.length ? h('div', { class: 'muted' }, `${w.triggers.length} triggers`) : null),
          w.in_flight,
          ago(w.connected_at_ms),
        ], { empty: 'No worker connected.' }),
      ),
    )
  })

export const triggersPage: Page = (ctx, root) => {
  const msg = h('div')
  const body = h('div')
  const release = async (id: string) => {
    try {
      await ctx.call('engine::triggers::release', { trigger_id: id })
      fill(msg, h('p', {}, `released ${id}`))
    } catch (e: any) {
      fill(msg, h('p', { class: 'error', 'data-code': e.code }, errorText(e)))
    }
  }
  fill(root, msg, body)
  return every(POLL_MS, async () => {
    const r = await ctx.call('engine::triggers::overview', {})
    const stuck = r.triggers.filter((t: any) => t.status !== 'active').length
    fill(
      body,
      h(
        'section',
        {},
        h('h2', {}, `Triggers (${r.triggers.length}${stuck ? `, ${stuck} not active` : ''})`),
        table(['trigger', 'type', 'function', 'owner', 'status', 'config', ''], r.triggers, (t: any) => [
          h('code', {}, t.id),
          t.type,
          h('code', {}, t.function_id),
          t.owner_worker_name || h('span', { class: 'muted' }, 'gone'),
          h('div', {}, badge(t.status), t.reason ? h('div', { class: 'muted' }, t.reason) : null),
          short(t.config, 60),
          t.status === 'orphaned' ? h('button', { class: 'release', onclick: () => release(t.id) }, 'Release') : '',
        ], { empty: 'No trigger.' }),
      ),
      h(
        'section',
        {},
        h('h2', {}, 'Trigger types'),
        table(['type', 'provider', 'triggers', 'description'], r.trigger_types, (tt: any) => [
          h('code', {}, tt.id),
          tt.builtin ? 'engine' : tt.provider_worker_name || '',
          tt.trigger_count,
          h('span', { class: 'muted' }, tt.description || ''),
        ]),
      ),
    )
  })
}

export type { Ctx }
