// Streams: streams, then groups, then items, paged. The open group is a
// live group of @trine/client: its items are read again on every change,
// and an item is edited as JSON with if_seq (a conflict is shown).
import type { Group } from '@trine/client'
import type { Page } from './main'
import { errorText } from './main'
import { every, POLL_MS, fill, h, short, table } from './dom'

const PAGE = 20

/** pager pages a list by "after": the last key of each page. */
function pager(load: (after: string | undefined) => Promise<{ keys: string[]; more: boolean }>, onchange: () => void) {
  const stack: (string | undefined)[] = [undefined]
  let more = false
  const el = h('div', { class: 'pager' })
  const p = {
    el,
    get after() {
      return stack[stack.length - 1]
    },
    async reload() {
      const r = await load(p.after)
      more = r.more
      p.next = r.keys[r.keys.length - 1]
      fill(
        el,
        h('button', { disabled: stack.length < 2, onclick: () => (stack.pop(), onchange()) }, '‹ prev'),
        h('span', { class: 'muted' }, `page ${stack.length}`),
        h('button', { class: 'next', disabled: !more, onclick: () => (stack.push(p.next), onchange()) }, 'next ›'),
      )
    },
    next: undefined as string | undefined,
    reset() {
      stack.length = 1
    },
  }
  return p
}

export const streamsPage: Page = (ctx, root) => {
  let stream = ''
  let group = ''
  const streamsEl = h('div')
  const groupsEl = h('div')
  const contractEl = h('div', { id: 'contract' })
  const refusalsEl = h('div', { id: 'refusals' })
  // The version of the open stream's contract (0: none): the items of the
  // open group are checked against it again when it changes.
  let version = 0
  const setVersion = (v: number) => {
    if (v === version) return
    version = v
    if (group) refresh()
  }
  // The open stream's contract and its history (engine::streams::schema).
  const loadContract = async () => {
    if (!stream || !(await ctx.has('engine::streams::schema'))) return setVersion(0), fill(contractEl), fill(refusalsEl)
    const s = stream
    const r = await ctx.call('engine::streams::schema', { stream_name: s })
    if (s !== stream) return // another stream was opened meanwhile
    const c = r.current
    setVersion(c?.version ?? 0)
    if (!c) return fill(contractEl, h('p', { class: 'muted' }, 'No contract: any JSON is accepted.')), fill(refusalsEl)
    const events = (d: any) => Object.keys(d.event_schemas || {}).join(', ') || '—'
    fill(contractEl,
      h('p', {}, h('strong', {}, `contract v${c.version}`), ` ${c.compatibility || 'BACKWARD'}`, c.group_id_pattern ? ` · groups ${c.group_id_pattern}` : '', ` · events ${events(c)}`),
      h('details', {}, h('summary', {}, 'item schema'), h('pre', {}, JSON.stringify(c.item_schema, null, 2))),
      table(['version', 'mode'], [...r.history].reverse(), (d: any) => [d.version, d.compatibility || '']))
    await loadRefusals()
  }
  // The stream's recent refusals on this engine (engine::streams::refusals).
  const loadRefusals = async () => {
    if (!stream || !version || !(await ctx.has('engine::streams::refusals'))) return fill(refusalsEl)
    const s = stream
    let r: any
    try {
      r = await ctx.call('engine::streams::refusals', { stream_name: s, limit: PAGE })
    } catch (e) {
      // A user who may not read the stream's items is refused them.
      if (s === stream) fill(refusalsEl, h('section', {}, h('h2', {}, `Recent refusals · ${s}`), h('p', { class: 'error' }, errorText(e))))
      return
    }
    if (s !== stream) return
    const by = (c: any) => (c?.name ? [c.name, c.transport, c.identity].filter(Boolean).join(' · ') : c?.worker_id || 'engine')
    fill(refusalsEl, h('section', {},
      h('h2', {}, `Recent refusals · ${stream}`),
      h('p', { class: 'muted' }, `${r.held} kept on this engine, newest first (at most ${r.max_per_stream} and ${Math.round(r.max_stream_bytes / 1024)} KiB a stream)`,
        r.dropped ? `; ${r.dropped} older ones let go` : '', '. Refused values are not kept.'),
      table(['time', 'write', 'group', 'item', 'failed', 'version', 'by'], r.refusals, (x: any) => [
        h('span', { title: x.time }, new Date(x.time).toLocaleTimeString()),
        h('code', {}, x.function + (x.event_type ? ` ${x.event_type}` : '')),
        h('code', {}, x.group_id),
        x.item_id ? h('code', {}, x.item_id) : '—',
        h('code', { class: 'error' }, x.error),
        `v${x.version}`,
        by(x.caller),
      ], { empty: 'No write refused recently.' })))
  }
  // failing checks the open group's items ids against the contract in
  // force (engine::streams::validate): id -> the pointer and rule.
  const failing = async (ids: string[]) => {
    const out = new Map<string, string>()
    if (!version || !ids.length || !(await ctx.has('engine::streams::validate'))) return out
    const r = await ctx.call('engine::streams::validate', { stream_name: stream, group_id: group, item_ids: ids }).catch(() => undefined)
    for (const f of r?.failing ?? []) out.set(f.item_id, f.error)
    return out
  }
  const groupEl = h('div', { class: 'muted' }, 'Pick a stream, then a group.')
  let live: Group<unknown> | undefined
  let unsub = () => {}
  let stopInfo = () => {}

  const streams = pager(async (after) => {
    const r = await ctx.call('stream::list_all', { limit: PAGE, after })
    const ids = r.stream.map((s: any) => s.id)
    fill(streamsEl, table(['stream', 'groups'], r.stream, (s: any) => [h('code', {}, s.id), s.groups.length], {
      empty: 'No stream yet.', onpick: (s: any) => openStream(s.id), picked: (s: any) => s.id === stream,
    }))
    return { keys: ids, more: !!r.more }
  }, () => streams.reload())
  const groups = pager(async (after) => {
    if (!stream) return { keys: [], more: false }
    const r = await ctx.call('stream::list_groups', { stream_name: stream, limit: PAGE, after })
    fill(groupsEl, table(['group'], r.groups, (g: string) => [h('code', {}, g)], {
      onpick: (g: string) => openGroup(g), picked: (g: string) => g === group,
    }))
    return { keys: r.groups, more: r.more }
  }, () => groups.reload())

  // The open group: header figures, items page, editor.
  const head = h('div', { class: 'row', id: 'group-head' })
  const itemsEl = h('div', { id: 'items' })
  const editor = h('div', { id: 'editor' })
  let rows: any[] = []
  const items = pager(async (after) => {
    const r = await ctx.call('stream::list', { stream_name: stream, group_id: group, limit: PAGE, after })
    rows = r.items
    const v = version
    const bad = await failing(rows.map((it) => it.id))
    const head = ['item', 'seq', 'value']
    if (v) head.push(`contract v${v}`)
    fill(itemsEl, table(head, rows, (it: any) => {
      const cells: any[] = [h('code', {}, it.id), it.seq, short(it.data, 100)]
      if (v) cells.push(bad.has(it.id) ? h('code', { class: 'error' }, '✗ ' + bad.get(it.id)) : h('span', { class: 'muted' }, '✓'))
      return cells
    }, { empty: 'No item.', onpick: edit, mark: (it: any) => (bad.has(it.id) ? 'fails' : undefined) }))
    return { keys: rows.map((it) => it.id), more: r.more }
  }, () => items.reload())
  let queued = false
  const refresh = () => {
    if (queued) return
    queued = true
    requestAnimationFrame(() => {
      queued = false
      items.reload().catch(() => {})
      drawHead()
    })
  }
  const figures = { presence: '—', history: '—', resyncs: '—' }
  const drawHead = () =>
    fill(head,
      h('strong', {}, `${stream} / ${group}`),
      h('span', {}, 'seq ', h('code', { id: 'group-seq' }, live?.seq ?? '…')),
      h('span', {}, 'items ', live?.items.size ?? '…'),
      h('span', { id: 'group-presence' }, 'presence ', figures.presence),
      h('span', {}, 'history ', figures.history),
      h('span', {}, 'resyncs/min ', figures.resyncs))

  function edit(it: any) {
    const text = h('textarea', { id: 'edit-value', spellcheck: false }, JSON.stringify(it.data, null, 2)) as HTMLTextAreaElement
    const seq = h('input', { id: 'edit-if-seq', value: String(it.seq), size: 8 }) as HTMLInputElement
    const out = h('div', { id: 'edit-result' })
    const save = async () => {
      let data: unknown
      try {
        data = JSON.parse(text.value)
      } catch (e) {
        return fill(out, h('p', { class: 'error' }, 'not JSON: ' + (e as Error).message))
      }
      try {
        const r = await ctx.call('stream::set', { stream_name: stream, group_id: group, item_id: it.id, data, if_seq: Number(seq.value) })
        seq.value = String(r.seq)
        fill(out, h('p', {}, `saved at seq ${r.seq}`))
      } catch (e: any) {
        fill(out, h('p', { class: 'error', 'data-code': e.code },
          e.code === 'conflict' ? `conflict: item ${it.id} changed since seq ${seq.value}; reload it and edit again` : errorText(e)))
      }
    }
    fill(editor, h('h3', {}, `Edit ${it.id}`), text, h('div', { class: 'row' }, 'if_seq', seq, h('button', { id: 'edit-save', onclick: save }, 'Save')), out)
  }

  function openStream(s: string) {
    if (s !== stream) fill(contractEl), fill(refusalsEl)
    stream = s
    groups.reset()
    groups.reload().catch(() => {})
    loadContract().catch(() => {})
    streams.reload().catch(() => {})
  }
  function openGroup(g: string) {
    group = g
    unsub()
    stopInfo()
    live?.close()
    fill(editor)
    live = ctx.client.group(stream, g)
    unsub = live.subscribe(refresh)
    items.reset()
    refresh()
    groups.reload().catch(() => {})
    fill(groupEl, h('section', {}, head, itemsEl, items.el, editor))
    // Presence and the group's figures, when the engine has the functions.
    stopInfo = every(POLL_MS, async () => {
      const q = { stream_name: stream, group_id: group }
      if (await ctx.has('stream::presence')) {
        const p = await ctx.call('stream::presence', { ...q, limit: 5 }).catch(() => undefined)
        if (p) figures.presence = `${p.count}` + (p.members?.length ? ` (${p.members.map((m: any) => m.identity).join(', ')}${p.more ? ', …' : ''})` : '')
      } else figures.presence = 'n/a'
      if (await ctx.has('stream::group_info')) {
        const i = await ctx.call('stream::group_info', q).catch(() => undefined)
        if (i) {
          figures.history = i.history ? `${i.history.events}/${i.history.max_events} events, ${Math.round(i.history.bytes / 1024)} KiB` : 'shared'
          figures.resyncs = String(i.resyncs_per_min)
        }
      }
      drawHead()
    })
  }

  fill(root, h('div', { class: 'cols' },
    h('section', {}, h('h2', {}, 'Streams'), streamsEl, streams.el),
    h('section', {}, h('h2', {}, 'Groups'), groupsEl, groups.el, h('h3', {}, 'Contract'), contractEl),
    h('div', {}, groupEl, refusalsEl)))
  const stop = every(POLL_MS, () => Promise.all([streams.reload(), groups.reload(), loadContract()]))
  return () => {
    stop()
    stopInfo()
    unsub()
    live?.close()
  }
}

export { errorText }
