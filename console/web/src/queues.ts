// Queues (depth, in flight, retries, dead letters peeked and redriven)
// and Cron (schedules with their last and next fires).
import type { Ctx, Page } from './main'
import { errorText } from './main'
import { ago, every, POLL_MS, fill, h, short, table } from './dom'

const missing = (fn: string) => h('p', { class: 'muted' }, `This engine has no ${fn}.`)

export const queuesPage: Page = (ctx, root) => {
  const list = h('div')
  const dead = h('div', { id: 'dead-letters' })
  const msg = h('div')
  let open = ''
  let after: number | undefined
  const peek = async (q: string, from?: number) => {
    open = q
    after = from
    try {
      const r = await ctx.call('iii::queue::dead_letters', { queue: q, limit: 20, after: from })
      fill(dead, h('h3', {}, `Dead letters of ${q}`),
        table(['seq', 'function', 'attempts', 'error', 'payload'], r.messages, (m: any) => [
          m.seq, h('code', {}, m.function_id), m.attempts, h('span', { class: 'error' }, m.error || ''),
          m.hidden ? h('span', { class: 'muted' }, 'hidden: its function is not yours to call')
            : m.truncated ? h('span', { class: 'muted' }, `${m.data_bytes} bytes`) : short(m.data, 80),
        ], { empty: 'No dead letter.' }),
        h('div', { class: 'pager' },
          from ? h('button', { onclick: () => peek(q) }, '« first') : null,
          r.more ? h('button', { onclick: () => peek(q, r.messages[r.messages.length - 1].seq) }, 'next ›') : null,
          h('button', { class: 'redrive', onclick: () => redrive(q) }, 'Redrive all')))
    } catch (e) {
      fill(dead, h('p', { class: 'error' }, errorText(e)))
    }
  }
  const redrive = async (q: string) => {
    try {
      const r = await ctx.call('iii::queue::redrive', { queue: q })
      fill(msg, h('p', {}, `${r.redriven} redriven from ${q}`))
      peek(q)
    } catch (e: any) {
      fill(msg, h('p', { class: 'error', 'data-code': e.code }, errorText(e)))
    }
  }
  fill(root, msg, h('section', {}, h('h2', {}, 'Queues'), list), h('section', {}, dead))
  return every(POLL_MS, async () => {
    if (!(await ctx.has('iii::queue::list'))) return fill(list, missing('iii::queue::list'))
    const r = await ctx.call('iii::queue::list', {})
    fill(list, table(['queue', 'type', 'depth', 'in flight', 'retries', 'dead letters'], r.queues, (q: any) => [
      h('code', {}, q.queue), q.type, q.depth, q.in_flight, q.redelivered, q.dead_letters,
    ], { empty: 'No queue configured (YAML queues:).', onpick: (q: any) => peek(q.queue), picked: (q: any) => q.queue === open }))
    if (open && after === undefined) await peek(open)
  })
}

export const cronPage: Page = (ctx: Ctx, root) =>
  every(POLL_MS, async () => {
    if (!(await ctx.has('cron::list'))) return fill(root, missing('cron::list'))
    // Every page of cron::list, up to 10,000 jobs.
    const r: { jobs: any[]; more: boolean } = { jobs: [], more: true }
    for (let i = 0; r.more && i < 10; i++) {
      const p = await ctx.call('cron::list', r.jobs.length ? { limit: 1000, after: r.jobs[r.jobs.length - 1].trigger_id } : { limit: 1000 })
      r.jobs.push(...p.jobs)
      r.more = p.more && p.jobs.length > 0
    }
    const when = (ms: number) => (ms ? h('span', { title: new Date(ms).toISOString() }, new Date(ms).toLocaleTimeString()) : h('span', { class: 'muted' }, 'never'))
    fill(root, h('section', {}, h('h2', {}, `Cron (${r.jobs.length}${r.more ? '+, the first shown' : ''})`),
      table(['trigger', 'function', 'schedule', 'last fire', 'next fire', 'last outcome'], r.jobs, (j: any) => [
        h('code', {}, j.trigger_id), h('code', {}, j.function_id), h('code', {}, j.expression + (j.timezone ? ' ' + j.timezone : '')),
        j.last_fire_ms ? h('span', {}, when(j.last_fire_ms), ' ', h('span', { class: 'muted' }, ago(j.last_fire_ms))) : when(0),
        when(j.next_fire_ms), j.last_error ? h('span', { class: 'error' }, j.last_error) : j.last_fire_ms ? 'ok' : '',
      ], { empty: 'No cron trigger.' })))
  })
