// Timers a hidden tab does not throttle. Browsers slow a background page's
// timers down (Chrome's intensive throttling wakes them once a minute),
// not a Worker's, and a Worker's messages reach the page at once; so the
// liveness timers tick in a small inline Worker, or on the page's own
// timers where there is none (Node, or a page whose CSP refuses blob:).
let w: Worker | null | undefined
const fns = new Map<number, () => void>()
let n = 0

function worker() {
  if (w === undefined) {
    w = null
    try {
      const g = globalThis as any
      if (g.Worker && g.document) {
        const src = 'const t={};onmessage=e=>{const[i,ms]=e.data;ms<0?clearInterval(t[i]):t[i]=setInterval(()=>postMessage(i),ms)}'
        w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })))
        w.onmessage = (e) => fns.get(e.data)?.()
      }
    } catch {}
  }
  return w
}

/** Calls fn every ms until the returned function is called. */
export function every(ms: number, fn: () => void): () => void {
  const wk = worker()
  if (!wk) {
    const id = setInterval(fn, ms)
    return () => clearInterval(id)
  }
  const i = ++n
  fns.set(i, fn)
  wk.postMessage([i, ms])
  return () => {
    fns.delete(i)
    wk.postMessage([i, -1])
  }
}

/** Calls fn once after ms (on the same timers) unless the returned function is called first. */
export function after(ms: number, fn: () => void): () => void {
  const stop = every(ms, () => {
    stop()
    fn()
  })
  return stop
}
