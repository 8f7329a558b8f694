// The page's one link to the hub: /ws/overlay, reconnected with backoff for as long as the
// page is open. JSON text messages are state; binary messages are camera frames whose
// header (camera, sent ms, sequence) matches FRAME_HEADER in overlays/server.py.

const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 5000;
const HEADER_BYTES = 13;

export class Connection {
  // cameras: the names of the cameras the page draws (the hub sends no others).
  constructor({ cameras, onMessage, onFrame, onOnline }) {
    this.onMessage = onMessage;
    this.onFrame = onFrame;
    this.onOnline = onOnline;
    this.retryMs = FIRST_RETRY_MS;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = `${scheme}://${location.host}/ws/overlay?cameras=${cameras.join(",")}`;
  }

  start() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.retryMs = FIRST_RETRY_MS;
      this.onOnline(true);
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        this.onMessage(JSON.parse(event.data));
      } else if (event.data.byteLength > HEADER_BYTES) {
        this.onFrame(parseFrame(event.data));
      }
    };
    // An error is always followed by close, which schedules the retry.
    ws.onclose = () => {
      this.onOnline(false);
      setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, LAST_RETRY_MS);
    };
  }
}

function parseFrame(buffer) {
  const view = new DataView(buffer);
  return {
    camera: view.getUint8(0),
    sentMs: view.getFloat64(1, true),
    seq: view.getUint32(9, true),
    jpeg: new Blob([new Uint8Array(buffer, HEADER_BYTES)], { type: "image/jpeg" }),
  };
}
