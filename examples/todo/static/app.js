// The todo page: the group todos/inbox, live through @trine/client, and
// writes through todos::add shown at once (optimistic) until the change
// they made arrives.
import { connect } from './trine-client.js'
import config from './config.js'

const $ = (id) => document.getElementById(id)
const now = () => performance.timeOrigin + performance.now()
const client = connect(config.stream, { callUrl: config.iii })
const todos = client.group(config.streamName, config.group)
const stats = client.item(config.streamName, 'stats', config.group)

client.on('state', (s) => {
  $('state').textContent = s
  $('state').className = 'state ' + s
})
stats.subscribe((s) => {
  $('stats').textContent = s ? `${s.added || 0} added in all` : ''
})

// Changes are drawn once per animation frame, so a burst of them costs
// one layout; each frame reports what it drew (the 'todos:render' event).
const dirty = new Map() // id -> {seq, got, at}: the change, when it came, and when it was committed
const pending = new Set()
let rebuild = true
let scheduled = false
todos.subscribe((items, change) => {
  if (change.type === 'snapshot' || change.type === 'resync') rebuild = true
  else if (change.id !== undefined) {
    dirty.set(change.id, { seq: change.seq, got: now(), at: change.time })
    if (change.pending) pending.add(change.id)
    else pending.delete(change.id)
  }
  if (!scheduled) {
    scheduled = true
    requestAnimationFrame(draw)
  }
})

const rows = new Map() // id -> li

function row(id, t) {
  let li = rows.get(id)
  if (!li) {
    li = document.createElement('li')
    li.dataset.id = id
    li.innerHTML = '<input type="checkbox"><label></label>'
    li.firstChild.id = li.lastChild.htmlFor = 'todo-' + id
    li.firstChild.addEventListener('change', (e) => save(id, li.lastChild.textContent, e.target.checked))
    rows.set(id, li)
  }
  li.lastChild.textContent = t.title
  li.firstChild.checked = !!t.done
  li.classList.toggle('done', !!t.done)
  li.classList.toggle('pending', pending.has(id))
  return li
}

function draw() {
  scheduled = false
  const drawn = []
  let reorder = rebuild
  if (rebuild) {
    rebuild = false
    dirty.clear()
    for (const id of rows.keys()) if (!todos.items.has(id)) rows.delete(id)
    for (const [id, t] of todos.items) row(id, t)
  }
  for (const [id, { seq, got, at }] of dirty) {
    const t = todos.items.get(id)
    if (!t) {
      rows.get(id)?.remove()
      rows.delete(id)
      continue
    }
    reorder ||= !rows.has(id)
    row(id, t)
    drawn.push({ id, seq, got, at, pending: pending.has(id) })
  }
  dirty.clear()
  // In id order: ids start with their creation time, so the oldest is first.
  if (reorder) $('list').replaceChildren(...[...rows].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, li]) => li))
  const t = now()
  $('count').textContent = `${todos.items.size} todo${todos.items.size === 1 ? '' : 's'}`
  $('empty').hidden = todos.items.size > 0
  const confirmed = drawn.filter((d) => !d.pending && d.at)
  // change.time is the change's commit time in the store.
  if (confirmed.length) $('lag').textContent = `on screen ${Math.round(t - confirmed[confirmed.length - 1].at)} ms after the write`
  dispatchEvent(new CustomEvent('todos:render', { detail: { time: t, seq: todos.seq, drawn } }))
}

// A new todo's id: its creation time (ms, base 36, fixed width, so ids
// sort by it) and a random part.
let lastMs = 0
const newID = () => (lastMs = Math.max(Date.now(), lastMs + 1)).toString(36).padStart(9, '0') + '-' + crypto.randomUUID().slice(0, 8)

async function save(id, title, done) {
  $('error').hidden = true
  try {
    await client.call('todos::add', { id, title, done }, {
      optimistic: { stream: config.streamName, group: config.group, id, data: { title, done } },
    })
  } catch (e) {
    $('error').textContent = `${e.code || 'error'}: ${e.message}`
    $('error').hidden = false
  }
}

$('add').addEventListener('submit', (e) => {
  e.preventDefault()
  const title = $('title').value.trim()
  if (!title) return
  $('title').value = ''
  save(newID(), title, false)
})

window.todoPage = { client, todos, save }
