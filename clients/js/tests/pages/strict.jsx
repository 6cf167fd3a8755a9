// A React page under StrictMode (which mounts, unmounts and mounts again)
// using @trine/client/react (useGroup, usePresence and useConnectionState), for compat/browser/strict.html. It counts what
// reaches the server: sockets to the gateway, and the frames sent on them
// (latency samples aside: they are not about subscriptions).
import { StrictMode, useState } from 'react'
import { createRoot } from 'react-dom/client'
import { connect } from '../../src/index.ts'
import { useConnectionState, useGroup, usePresence } from '../../src/react.ts'

const q = new URLSearchParams(location.search)
const gw = 'ws://' + q.get('gw')
window.__gatewaySockets = 0
window.__sent = []
class CountingWebSocket extends WebSocket {
  constructor(url) {
    super(url)
    this.counted = url.startsWith(gw)
    if (this.counted) window.__gatewaySockets++
  }
  send(data) {
    const type = JSON.parse(data).type
    if (this.counted && type !== 'latency') window.__sent.push(type)
    super.send(data)
  }
}
const client = (window.__client = connect('http://' + q.get('gw'), {
  token: q.get('token'),
  callUrl: 'ws://' + q.get('iii'),
  WebSocket: CountingWebSocket,
  linger: 300,
}))

function Messages({ group }) {
  const { items, seq } = useGroup(client, 'chat', group)
  // The same group's handle, with presence: still one join.
  const { members } = usePresence(client, 'chat', group, { meta: { name: 'strict' } })
  const state = useConnectionState(client)
  const here = [...members.values()].map((m) => `${m.identity}:${m.connections}:${m.meta?.name}`).join()
  return (
    <ul id="messages" data-seq={seq ?? ''} data-state={state} data-members={here}>
      {[...items].map(([id, m]) => (
        <li key={id}>{m.text}</li>
      ))}
    </ul>
  )
}

function App() {
  const [shown, setShown] = useState(true)
  window.__unmount = () => setShown(false)
  return shown ? <Messages group={q.get('group')} /> : <p id="gone">gone</p>
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
