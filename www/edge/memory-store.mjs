// The in-memory store of the edge handler: get, put and an atomic increment over a Map, loaded
// from a snapshot (`granted export --edge`). One process's memory: its counters are not shared
// with other instances (see www/edge/README.md for what that means).

import { snapshotEntries } from './handler.mjs';

export class MemoryStore {
  constructor(snapshot) {
    this.map = new Map(snapshot ? snapshotEntries(snapshot) : []);
  }

  async get(key) {
    const value = this.map.get(key);
    return value === undefined ? null : structuredClone(value);
  }

  async put(key, value) {
    this.map.set(key, structuredClone(value));
  }

  /** Adds one and answers the new value; atomic, since JavaScript runs it without a pause. */
  async increment(key) {
    const next = (Number(this.map.get(key)) || 0) + 1;
    this.map.set(key, next);
    return next;
  }
}
