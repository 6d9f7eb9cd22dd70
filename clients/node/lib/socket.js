'use strict';
// Finding kited's Unix socket, deciding whether to trust it, and talking its newline-delimited
// JSON protocol: the same path rules and ownership checks as kitectl.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { KitedError, NotRunning, fromWire } = require('./errors');

/** The profile used when none is named. */
const DEFAULT_PROFILE = 'default';
/** How long connecting and an ordinary answer may take (kitectl waits as long). */
const ANSWER_TIMEOUT_MS = 5000;
/** kited's own limit on a line; an answer longer than this is not kited talking. */
const MAX_LINE = 64 * 1024;

/** The profile: `opts.profile`, then `KITED_PROFILE`, then `default`; checked like kitectl does. */
function profileName(opts = {}) {
  const name = opts.profile || process.env.KITED_PROFILE || DEFAULT_PROFILE;
  const ok =
    name.length >= 1 && name.length <= 64 && /^[A-Za-z0-9._-]+$/.test(name) && !name.startsWith('.');
  if (!ok) {
    throw new KitedError(
      'bad_request',
      `profile name ${JSON.stringify(name)} must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'`,
    );
  }
  return name;
}

/** `$XDG_RUNTIME_DIR/kited`, or `/tmp/kited-$UID` where XDG_RUNTIME_DIR is unset or empty. */
function runtimeDir() {
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? path.join(xdg, 'kited') : `/tmp/kited-${process.getuid()}`;
}

/** `opts.socket`, then `KITED_SOCKET`, then the profile's socket in the runtime directory. */
function socketPath(opts = {}) {
  if (opts.socket) return String(opts.socket);
  if (process.env.KITED_SOCKET) return process.env.KITED_SOCKET;
  return path.join(runtimeDir(), `${profileName(opts)}.sock`);
}

function myUid() {
  return process.geteuid();
}

/** This user, or root (who can impersonate anyone anyway). */
function trustedUid(uid) {
  return uid === myUid() || uid === 0;
}

function untrusted(what) {
  return new KitedError(
    'untrusted',
    `refusing to talk to kited: ${what}; remove it, or set XDG_RUNTIME_DIR to a private directory`,
  );
}

function lstat(p) {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
    throw untrusted(`cannot check ${p}: ${e.message}`);
  }
}

function ownedBy(p, uid) {
  return untrusted(
    `${p} belongs to uid ${uid}, not to you (uid ${myUid()}): another user created it first, so it cannot be trusted`,
  );
}

/**
 * The socket's directory must be a real directory (not a symlink), owned by this user or root,
 * and not writable by others; a root-owned sticky directory such as /tmp is allowed, since nobody
 * can replace another user's file there. Returns false when the directory does not exist.
 */
function checkDir(dir) {
  const st = lstat(dir);
  if (!st) return false;
  if (st.isSymbolicLink()) throw untrusted(`${dir} is a symbolic link, not kited's own file`);
  if (!st.isDirectory()) throw untrusted(`${dir} is not a directory`);
  if (!trustedUid(st.uid)) throw ownedBy(dir, st.uid);
  const mode = st.mode & 0o7777;
  const stickyRoot = (mode & 0o1000) !== 0 && st.uid === 0;
  if ((mode & 0o022) !== 0 && !stickyRoot) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw untrusted(`${dir} can be written by other users (mode ${octal}), so it cannot be trusted`);
  }
  return true;
}

/** The socket file must be a socket owned by this user or root. */
function checkSocketFile(p, st) {
  if (!st.isSocket()) throw untrusted(`${p} is not a socket`);
  if (!trustedUid(st.uid)) throw ownedBy(p, st.uid);
}

/** How many symbolic links in a row a socket path may go through (kitectl's bound): a link to a
 * link is plenty, and a bound ends a loop. */
const MAX_LINK_HOPS = 8;

/**
 * Checks the directory, then the socket file, before connecting. The last component may be
 * this user's own symbolic link (`~/kited.sock` pointing at the runtime socket) in a directory
 * that passes the checks; its target is then checked the same way. A link in place of a
 * directory is refused, as is a link someone else owns.
 *
 * kitectl also asks the kernel for the listening process's uid (SO_PEERCRED); Node cannot
 * without native code, so the socket file's owner stands in for it: only its owner (or root)
 * can have bound it in a directory nobody else can write.
 */
function checkSocketPath(p) {
  for (let hop = 0; hop <= MAX_LINK_HOPS; hop += 1) {
    const dir = p.includes('/') ? path.dirname(p) : null;
    if (dir !== null && !checkDir(dir)) return;
    const st = lstat(p);
    if (!st) return;
    if (!st.isSymbolicLink()) {
      checkSocketFile(p, st);
      return;
    }
    if (!trustedUid(st.uid)) throw ownedBy(p, st.uid);
    let target;
    try {
      target = fs.readlinkSync(p);
    } catch (e) {
      throw untrusted(`cannot check ${p}: ${e.message}`);
    }
    p = dir === null ? target : path.resolve(dir, target);
  }
  throw untrusted(`${p}: more than ${MAX_LINK_HOPS} symbolic links in a row`);
}

function startHint(p) {
  const profile = path.basename(p, '.sock');
  if (path.dirname(p) === runtimeDir() && profile && profile !== DEFAULT_PROFILE) {
    return `start it with \`systemctl --user start kited@${profile}\` or \`kited --profile ${profile}\``;
  }
  return 'start it with `systemctl --user start kited` or `kited`';
}

function unreachable(p, err) {
  switch (err.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new NotRunning(`kited is not running (no socket at ${p}): ${startHint(p)}`);
    case 'ECONNREFUSED':
      return new NotRunning(`kited is not running (nothing listening on ${p}): ${startHint(p)}`);
    case 'EAGAIN':
    case 'ETIMEDOUT':
      return new NotRunning(
        `kited is not answering (connecting to ${p} timed out): check \`systemctl --user status kited\``,
      );
    case 'EACCES':
    case 'EPERM':
      return new NotRunning(
        `cannot connect to kited at ${p}: permission denied (is it another user's daemon?)`,
      );
    default:
      return new NotRunning(`cannot connect to kited at ${p}: ${err.message}`);
  }
}

/**
 * One connection to kited. `onLine(obj)` gets every answer line parsed; `onEnd(err)` is called
 * once when the connection ends, with the error that ended it (or null when kited hung up).
 * `keepAlive: false` lets the process exit while this connection is open.
 */
class Connection {
  constructor(p, { keepAlive = true } = {}) {
    this.path = p;
    this.keepAlive = keepAlive;
    this.buffer = '';
    this.ended = false;
    this.onLine = () => {};
    this.onEnd = () => {};
  }

  /** Resolves once connected (after the trust checks). */
  open() {
    checkSocketPath(this.path);
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path: this.path });
      this.sock = sock;
      if (!this.keepAlive) sock.unref();
      sock.setEncoding('utf8');
      let connected = false;
      sock.once('connect', () => {
        connected = true;
        resolve();
      });
      sock.on('data', (chunk) => this.receive(chunk));
      sock.on('error', (err) => {
        if (!connected) {
          this.ended = true;
          reject(unreachable(this.path, err));
        } else {
          this.finish(new NotRunning(`lost the connection to kited at ${this.path}: ${err.message}`));
        }
      });
      sock.on('close', () => this.finish(null));
    });
  }

  receive(chunk) {
    this.buffer += chunk;
    let nl;
    while (!this.ended && (nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        this.fail(protocolError(`a line that is not JSON (${line.length} bytes)`));
        return;
      }
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
        this.fail(protocolError('a line that is not a JSON object'));
        return;
      }
      this.onLine(obj);
    }
    if (this.buffer.length > MAX_LINE) this.fail(protocolError(`a line over ${MAX_LINE} bytes`));
  }

  send(obj) {
    this.sock.write(JSON.stringify(obj) + '\n');
  }

  fail(err) {
    this.finish(err);
    this.close();
  }

  finish(err) {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(err);
  }

  close() {
    if (this.sock) this.sock.destroy();
  }
}

function protocolError(what) {
  return new KitedError('protocol', `unexpected answer from kited: ${what}`);
}

/**
 * Sends one request on a fresh connection and resolves with the answer object (`ok: true`);
 * rejects with the matching error otherwise. `timeoutMs` bounds connecting and the answer.
 */
async function call(opts, request, timeoutMs = ANSWER_TIMEOUT_MS, { keepAlive = true } = {}) {
  const p = socketPath(opts);
  const conn = new Connection(p, { keepAlive });
  let timer;
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        reject(
          new NotRunning(
            `kited did not answer within ${Math.round(timeoutMs / 1000)}s (${p}): check \`systemctl --user status kited\``,
          ),
        );
      }, timeoutMs);
      if (!keepAlive) timer.unref();
      conn.onLine = (answer) => {
        if (answer.ok === true) resolve(answer);
        else if (answer.ok === false) reject(fromWire(answer.error));
        else reject(protocolError('an answer without "ok"'));
      };
      conn.onEnd = (err) => reject(err || new NotRunning(`kited closed the connection without answering (${p})`));
      conn.open().then(() => conn.send(request), reject);
    });
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

module.exports = {
  ANSWER_TIMEOUT_MS,
  Connection,
  call,
  checkDir,
  checkSocketPath,
  profileName,
  runtimeDir,
  socketPath,
  protocolError,
};
