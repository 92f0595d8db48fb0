// The technician's taps that must survive a basement: arrive, complete (with its photos) and hand back are
// kept in IndexedDB and sent in the order they were made once the signal returns. Each carries an
// Idempotency-Key made when the tap was made, so a send whose answer was lost, sent again, happens once.
// A grab is never queued: by the time the signal returns the ticket is likely someone else's.
// IndexedDB through `idb` (npm, /static/vendor/idb/umd.js, a classic script defining window.idb).

const DB_NAME = 'fieldpool-tech';
const STORE = 'outbox';

export const KIND_NAMES = { arrive: '到达', complete: '完工', release: '退单' };

const newKey = () => crypto.randomUUID();

// A network failure (no answer at all) keeps the tap for later; any answer from the server settles it.
const unanswered = (error) => error.status === 0;

export class Outbox {
  // owner: the signed-in technician's user id (a shared phone keeps each one's taps apart).
  constructor(client, owner, { onChange, onSent, onRefused }) {
    Object.assign(this, { client, owner, onChange, onSent, onRefused });
    this.sending = Promise.resolve();
    this.db = window.idb.openDB(DB_NAME, 1, {
      upgrade(db) { db.createObjectStore(STORE, { keyPath: 'id', autoIncrement: true }); },
    });
  }

  // Waiting taps of this technician, oldest first.
  async waiting() {
    return (await (await this.db).getAll(STORE)).filter((tap) => tap.owner === this.owner);
  }

  // Keep a tap, then try to send it (and anything before it) at once.
  async add(kind, ticket, body, photos = []) {
    const tap = { owner: this.owner, kind, ticketId: ticket.id, number: ticket.number, body, key: newKey(),
      photos: [...photos].map((file) => ({ file, key: newKey(), ref: null })), at: new Date().toISOString() };
    await (await this.db).add(STORE, tap);
    await this.onChange();
    return this.flush();
  }

  // Send the waiting taps in order, one pass after another (never two at once, so never out of order).
  flush() {
    this.sending = this.sending.then(() => this.sendAll());
    return this.sending;
  }

  // Oldest first until none is left or the network carries none: a tap added meanwhile is read too.
  async sendAll() {
    for (let [tap] = await this.waiting(); tap; [tap] = await this.waiting()) {
      let refused = null;
      let answered = null;
      try {
        answered = await this.send(tap);
      } catch (error) {
        if (unanswered(error)) return;
        refused = error; // the server said no: sending it again would not change its mind
      }
      await (await this.db).delete(STORE, tap.id);
      // The ticket as the server answered goes in before the tap leaves the list: the card never shows
      // the step undone while the next refresh is on its way (or cannot come, the signal gone again).
      if (refused) this.onRefused(tap, refused);
      else this.onSent(tap, answered);
      await this.onChange();
    }
  }

  async send(tap) {
    const path = `/api/v1/tickets/${tap.ticketId}`;
    if (tap.kind === 'complete') {
      for (const photo of tap.photos.filter((p) => !p.ref)) {
        const stored = await this.client.upload(tap.ticketId, photo.file, { 'Idempotency-Key': photo.key });
        photo.ref = `/api/v1/attachments/${stored.id}`;
        await (await this.db).put(STORE, tap); // a reload resumes after the photos already up
      }
      tap.body.photos = tap.photos.map((p) => p.ref);
    }
    return this.client.post(`${path}/${tap.kind}`, tap.body, { 'Idempotency-Key': tap.key });
  }
}
