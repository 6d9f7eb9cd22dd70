'use strict';
// The errors kited-client throws: one base class carrying kited's error kind, and the two cases a
// program most often handles by itself (no daemon, nobody logged in).

/** Anything that went wrong between this program and kited (or Redis). */
class KitedError extends Error {
  /**
   * @param {string} kind kited's error kind (`not_configured`, `kite`, ...) or one of this
   *   library's own (`not_running`, `untrusted`, `timeout`, `protocol`, `redis`, `no_kiteconnect`).
   * @param {string} message one line a person can act on; never contains a token.
   */
  constructor(kind, message) {
    super(message);
    this.name = 'KitedError';
    this.kind = kind;
  }
}

/** kited cannot be reached: no socket, nobody listening, or it stopped answering (kitectl's exit 3). */
class NotRunning extends KitedError {
  constructor(message) {
    super('not_running', message);
    this.name = 'NotRunning';
  }
}

/** kited (or Redis) has no valid token: someone must log in (kitectl's exit 4). */
class LoginRequired extends KitedError {
  constructor(message) {
    super('login_required', message);
    this.name = 'LoginRequired';
  }
}

/** The error for an `{"ok":false,"error":{kind,message}}` answer from kited. */
function fromWire(error) {
  const kind = error && typeof error.kind === 'string' ? error.kind : 'internal';
  const message = error && typeof error.message === 'string' ? error.message : 'kited failed';
  if (kind === 'login_required') return new LoginRequired(message);
  return new KitedError(kind, message);
}

module.exports = { KitedError, NotRunning, LoginRequired, fromWire };
