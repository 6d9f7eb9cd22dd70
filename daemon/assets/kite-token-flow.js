/*!
 * kite-token-flow.js — browser integration for kited (Kite Connect token keeper).
 *
 * Plain script, no dependencies, ES2017. Load it from kited itself:
 *   <script src="http://127.0.0.1:8079/static/kite-token-flow.js"></script>
 * and it talks to the kited it was loaded from (your origin must be listed in
 * kited's `http.allowed_origins`). Defines on `window`: KiteTokenFlow,
 * createTokenRefreshButton, createTokenStatusIndicator, ensureValidToken.
 * Widgets only add classes (kite-*) and a `data-state` attribute: style them yourself.
 */
(function (root, factory) {
  'use strict';
  var api = factory(root);
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  if (root) Object.keys(api).forEach(function (k) { root[k] = api[k]; });
}(typeof window !== 'undefined' ? window : (typeof globalThis !== 'undefined' ? globalThis : this), function (root) {
  'use strict';

  var doc = root && root.document;
  var FALLBACK_BASE = 'http://127.0.0.1:8079';

  // document.currentScript is only set while this file runs, so read it now.
  var DEFAULT_BASE = (function () {
    try {
      var s = doc && doc.currentScript;
      if (s && s.getAttribute('data-kited-url')) return s.getAttribute('data-kited-url');
      if (s && s.src) return new URL(s.src, root.location.href).origin;
      var o = root && root.location && root.location.origin;
      if (o && /^https?:/.test(o)) return o;
    } catch (e) { /* fall through */ }
    return FALLBACK_BASE;
  }());

  var IST_OFFSET_MS = 330 * 60 * 1000;

  function isHidden() { return !!(doc && doc.hidden); }

  /**
   * Format a number of seconds as "3h 12m", "12m", "45s" or "1d 2h".
   * @param {number} seconds
   * @returns {string}
   */
  function formatDuration(seconds) {
    var s = Math.max(0, Math.round(Math.abs(Number(seconds) || 0)));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm';
    return s + 's';
  }

  /**
   * Format an RFC 3339 time as India Standard Time: "06:00 IST", with "tomorrow" or
   * a date when it is not today (in IST).
   * @param {string} iso RFC 3339 timestamp
   * @param {Date} [now] reference time (default: now)
   * @returns {string} e.g. "06:00 IST tomorrow"; "" if iso is not a time
   */
  function formatIst(iso, now) {
    var t = Date.parse(iso);
    if (!iso || isNaN(t)) return '';
    var ist = new Date(t + IST_OFFSET_MS);
    var today = new Date((now ? now.getTime() : Date.now()) + IST_OFFSET_MS);
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    var out = pad(ist.getUTCHours()) + ':' + pad(ist.getUTCMinutes()) + ' IST';
    var dayDiff = Math.round((Date.UTC(ist.getUTCFullYear(), ist.getUTCMonth(), ist.getUTCDate()) -
      Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate())) / 86400000);
    if (dayDiff === 1) return out + ' tomorrow';
    if (dayDiff === -1) return out + ' yesterday';
    if (dayDiff !== 0) {
      var months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
      return out + ' on ' + ist.getUTCDate() + ' ' + months[ist.getUTCMonth()];
    }
    return out;
  }

  /**
   * The one-word state of a status object: none, valid, expiring, expired,
   * invalidated, or not-configured (when `configured` is false).
   * @param {object} status an /api/token/status answer
   * @returns {string}
   */
  function stateWord(status) {
    if (!status) return 'unknown';
    if (status.configured === false) return 'not-configured';
    return String(status.state || 'none');
  }

  /**
   * Pull the request token out of what a person pasted: the full redirect URL
   * (`...?action=login&status=success&request_token=XYZ`), its query string, or
   * the bare token. Throws an Error with a readable message when there is none
   * (e.g. the login was cancelled).
   * @param {string} callbackUrlOrToken
   * @returns {string} the request token
   */
  function extractRequestToken(callbackUrlOrToken) {
    var s = String(callbackUrlOrToken == null ? '' : callbackUrlOrToken).trim();
    if (!s) throw new Error('Paste the redirected URL or the request token first.');
    if (/^[A-Za-z0-9._~-]+$/.test(s) && !/request_token/.test(s)) return s;
    var params;
    try {
      params = new URL(s).searchParams;
    } catch (e) {
      var q = s.split('#')[0];
      params = new URLSearchParams(q.indexOf('?') >= 0 ? q.slice(q.indexOf('?') + 1) : q);
    }
    var token = (params.get('request_token') || '').trim();
    var status = params.get('status');
    if (status && status !== 'success' && !token) {
      throw new Error(status === 'cancelled'
        ? 'The Kite login was cancelled. Log in again to get a new request token.'
        : 'Kite reported status "' + status + '" instead of a successful login. Log in again.');
    }
    if (!token) {
      throw new Error('No request_token found. Paste the whole address from the browser bar ' +
        'after logging in (it contains request_token=...), or just the token.');
    }
    if (!/^[A-Za-z0-9._~-]+$/.test(token)) throw new Error('That request_token does not look valid.');
    return token;
  }

  /**
   * Talks to one kited instance over its HTTP API.
   */
  class KiteTokenFlow {
    /**
     * @param {string} [baseUrl] kited's base URL, e.g. "http://127.0.0.1:8079".
     *   Default: the origin this script was loaded from.
     */
    constructor(baseUrl) {
      this.baseUrl = String(baseUrl || DEFAULT_BASE).replace(/\/+$/, '');
      /** @type {object|null} the last status seen */
      this.lastStatus = null;
      /** @type {string|null} the callback URL to register at Kite (after init) */
      this.callback = null;
      this._poll = null;
    }

    /** @private */
    async _request(path, init) {
      var opts = Object.assign({ credentials: 'omit', cache: 'no-store', headers: { Accept: 'application/json' } }, init || {});
      var res;
      try {
        res = await fetch(this.baseUrl + path, opts);
      } catch (e) {
        // A browser cannot tell "kited is down" from "kited refused this origin (CORS)".
        var why = 'kited is not reachable at ' + this.baseUrl;
        var here = root && root.location && root.location.origin;
        var there = this.baseUrl;
        try { there = new URL(this.baseUrl).origin; } catch (e2) { /* keep */ }
        if (here && here !== there) {
          why += ', or it does not allow this page\'s origin ' + here +
            ' (add it to http.allowed_origins in kited\'s config)';
        }
        throw new Error(why + ' (' + (e && e.message || e) + ')');
      }
      var body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      if (!res.ok) {
        var detail = body && (body.detail || (body.error && body.error.message) || body.message);
        var err = new Error(detail ? String(detail) : 'kited answered HTTP ' + res.status + ' for ' + path);
        err.status = res.status;
        err.body = body;
        throw err;
      }
      if (body === null) throw new Error('kited sent an unreadable answer for ' + path);
      return body;
    }

    /**
     * Fetch the callback URL and the current status. Call once before use.
     * @returns {Promise<KiteTokenFlow>} this
     */
    async init() {
      var r = await Promise.all([this.callbackUrl(), this.status()]);
      this.callback = r[0];
      return this;
    }

    /**
     * GET /api/token/status.
     * @returns {Promise<object>} {valid, needs_refresh, expires_at, seconds_left, user_id,
     *   user_name, login_time, state, configured, profile, hint}
     */
    async status() {
      this.lastStatus = await this._request('/api/token/status');
      return this.lastStatus;
    }

    /**
     * True when a new login is needed (no token, expiring, expired, invalidated, not configured).
     * @returns {Promise<boolean>}
     */
    async needsRefresh() {
      var s = await this.status();
      return s.needs_refresh !== false || s.configured === false;
    }

    /**
     * GET /api/token/refresh-info: a fresh single-use login URL.
     * @returns {Promise<{login_url:string, callback_url:string, instructions:string}>}
     */
    refreshInfo() {
      return this._request('/api/token/refresh-info');
    }

    /**
     * GET /api/token/callback-url: the redirect URL to register on the Kite developer console.
     * @returns {Promise<string>}
     */
    async callbackUrl() {
      var b = await this._request('/api/token/callback-url');
      this.callback = b.callback_url;
      return b.callback_url;
    }

    /**
     * Open the Kite login page in a new tab: window.open(login_url, '_blank').
     * Call it from a click handler so the popup blocker allows it.
     * @returns {Promise<object>} the refresh-info answer
     * @throws {Error} kited's `detail` (e.g. not configured), or when the tab was blocked
     */
    async openLoginPage() {
      var info = await this.refreshInfo();
      var w = root.open(info.login_url, '_blank');
      if (!w) throw new Error('The browser blocked the Kite login tab: allow pop-ups here, or open ' + info.login_url);
      try { w.opener = null; } catch (e) { /* cross-origin already: fine */ }
      return info;
    }

    /**
     * See the module-level extractRequestToken: URL, query string or bare token → token.
     * @param {string} callbackUrlOrToken
     * @returns {string}
     */
    extractRequestToken(callbackUrlOrToken) {
      return extractRequestToken(callbackUrlOrToken);
    }

    /**
     * POST /api/token/generate-access-token. kited exchanges and stores the token.
     * @param {string} requestToken
     * @returns {Promise<object>} the success object (success, access_token, user_id, user_name, ...)
     * @throws {Error} with the server's `detail` text on failure
     */
    async generate(requestToken) {
      var body = await this._request('/api/token/generate-access-token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ request_token: String(requestToken) })
      });
      if (body.success === false) throw new Error(body.detail || body.message || 'Failed to generate access token');
      return body;
    }

    /**
     * Extract the request token from a pasted redirect URL (or token) and exchange it.
     * @param {string} callbackUrl
     * @returns {Promise<object>} the generate() success object
     */
    async completeTokenRefresh(callbackUrl) {
      return this.generate(extractRequestToken(callbackUrl));
    }

    /**
     * Call onStatus(status, error) now and every intervalMs while the page is visible;
     * pauses while document.hidden, refreshes at once when the page is shown or focused.
     * On a failed fetch, status is null and error is set.
     * @param {function(object|null, Error=)} onStatus
     * @param {number} [intervalMs=30000]
     */
    startPolling(onStatus, intervalMs) {
      var self = this;
      var every = Math.max(1000, intervalMs || 30000);
      this.stopPolling();
      var p = { timer: null, busy: false };
      var tick = function () {
        if (p.busy || self._poll !== p) return;
        p.busy = true;
        self.status().then(function (s) {
          p.busy = false;
          if (self._poll === p && onStatus) onStatus(s);
        }, function (e) {
          p.busy = false;
          if (self._poll === p && onStatus) onStatus(null, e);
        });
      };
      var arm = function () {
        clearInterval(p.timer);
        p.timer = isHidden() ? null : setInterval(tick, every);
      };
      p.onShow = function () { if (!isHidden()) tick(); arm(); };
      this._poll = p;
      if (doc) doc.addEventListener('visibilitychange', p.onShow);
      if (root && root.addEventListener) root.addEventListener('focus', p.onShow);
      p.onShow();
    }

    /** Stop what startPolling started. */
    stopPolling() {
      var p = this._poll;
      if (!p) return;
      clearInterval(p.timer);
      if (doc) doc.removeEventListener('visibilitychange', p.onShow);
      if (root && root.removeEventListener) root.removeEventListener('focus', p.onShow);
      this._poll = null;
    }
  }

  KiteTokenFlow.extractRequestToken = extractRequestToken;
  KiteTokenFlow.formatDuration = formatDuration;
  KiteTokenFlow.formatIst = formatIst;
  KiteTokenFlow.stateWord = stateWord;
  KiteTokenFlow.defaultBaseUrl = DEFAULT_BASE;

  function container(idOrEl) {
    var el = typeof idOrEl === 'string' ? doc.getElementById(idOrEl) : idOrEl;
    if (!el) throw new Error('kite-token-flow: no element with id "' + idOrEl + '"');
    return el;
  }

  function make(tag, cls, text) {
    var el = doc.createElement(tag);
    if (cls) el.className = cls;
    if (text) el.textContent = text;
    return el;
  }

  /**
   * Render a "Log in with Kite" button, short instructions and a paste box into a container.
   * @param {string|Element} containerId
   * @param {{baseUrl?:string, label?:string, onSuccess?:function(object), onError?:function(Error)}} [options]
   * @returns {{element:Element, flow:KiteTokenFlow, destroy:function()}}
   */
  function createTokenRefreshButton(containerId, options) {
    var o = options || {};
    var host = container(containerId);
    var flow = new KiteTokenFlow(o.baseUrl);
    var box = make('div', 'kite-refresh');
    var button = make('button', 'kite-refresh-button', o.label || 'Log in with Kite');
    button.type = 'button';
    var help = make('p', 'kite-refresh-help', 'Log in on the Kite page that opens; kited catches the redirect ' +
      'itself. If that tab ends on an error page, copy its address and paste it below.');
    var form = make('form', 'kite-refresh-paste');
    var label = make('label', 'kite-refresh-label', 'Redirected URL or request token ');
    var input = make('input', 'kite-refresh-input');
    input.type = 'text';
    input.autocomplete = 'off';
    input.spellcheck = false;
    input.placeholder = 'http://127.0.0.1:8079/auth/callback?...&request_token=...';
    var submit = make('button', 'kite-refresh-submit', 'Get access token');
    submit.type = 'submit';
    var msg = make('p', 'kite-refresh-message');
    msg.setAttribute('role', 'status');
    msg.setAttribute('aria-live', 'polite');
    label.appendChild(input);
    form.appendChild(label);
    form.appendChild(submit);
    box.appendChild(button);
    box.appendChild(help);
    box.appendChild(form);
    box.appendChild(msg);
    host.appendChild(box);

    var say = function (text, kind) {
      msg.textContent = text;
      msg.className = 'kite-refresh-message' + (kind ? ' kite-' + kind : '');
    };
    var fail = function (e) {
      say(e.message, 'error');
      if (o.onError) o.onError(e);
    };
    button.addEventListener('click', function () {
      say('Opening the Kite login…');
      flow.openLoginPage().then(function () { say('Log in on the Kite tab, then come back here.'); }, fail);
    });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submit.disabled = true;
      say('Exchanging the request token…');
      Promise.resolve().then(function () { return flow.completeTokenRefresh(input.value); }).then(function (data) {
        input.value = '';
        say('Logged in as ' + (data.user_name || data.user_id) + ' (' + data.user_id + '). ' +
          'Programs get the token with: kitectl get-token', 'success');
        if (o.onSuccess) o.onSuccess(data);
      }, fail).then(function () { submit.disabled = false; });
    });
    return { element: box, flow: flow, destroy: function () { box.remove(); } };
  }

  /** Dot colours used unless `unstyled` is set (applied through the CSSOM, so a strict CSP is fine). */
  var DOT_COLORS = {
    valid: '#1a7f37',
    expiring: '#9a6700',
    expired: '#c62828',
    invalidated: '#c62828',
    unreachable: '#c62828'
  };

  var STATE_TEXT = {
    valid: 'Kite token valid',
    expiring: 'Kite token expiring soon',
    expired: 'Kite token expired',
    invalidated: 'Kite token invalidated',
    none: 'Kite login required',
    'not-configured': 'kited not configured',
    unreachable: 'kited not reachable',
    unknown: 'Checking Kite token…'
  };

  /**
   * Render a badge with the token state and time left, kept fresh by polling.
   * The badge (class kite-status) carries data-state="valid|expiring|expired|
   * invalidated|none|not-configured|unreachable|unknown"; when a login is needed
   * a "Log in" button (class kite-status-login) appears. The dot gets a size and a colour per
   * state unless `unstyled: true` (then style .kite-status-dot yourself).
   * @param {string|Element} containerId
   * @param {{baseUrl?:string, intervalMs?:number, unstyled?:boolean,
   *   onStatus?:function(object|null, Error=)}} [options]
   * @returns {{element:Element, flow:KiteTokenFlow, destroy:function()}}
   */
  function createTokenStatusIndicator(containerId, options) {
    var o = options || {};
    var host = container(containerId);
    var flow = new KiteTokenFlow(o.baseUrl);
    var box = make('div', 'kite-status');
    box.setAttribute('role', 'status');
    box.setAttribute('aria-live', 'polite');
    box.setAttribute('data-state', 'unknown');
    var dot = make('span', 'kite-status-dot');
    dot.setAttribute('aria-hidden', 'true');
    if (!o.unstyled) {
      dot.style.display = 'inline-block';
      dot.style.width = '0.65em';
      dot.style.height = '0.65em';
      dot.style.borderRadius = '50%';
      dot.style.marginRight = '0.4em';
      dot.style.background = '#6e7781';
    }
    var text = make('span', 'kite-status-text', STATE_TEXT.unknown);
    var login = make('button', 'kite-status-login', 'Log in');
    login.type = 'button';
    login.hidden = true;
    box.appendChild(dot);
    box.appendChild(text);
    box.appendChild(login);
    host.appendChild(box);

    login.addEventListener('click', function () {
      flow.openLoginPage().catch(function (e) { text.textContent = e.message; });
    });
    flow.startPolling(function (s, err) {
      var state = err ? 'unreachable' : stateWord(s);
      var line = STATE_TEXT[state] || state;
      if (s && typeof s.seconds_left === 'number' && s.seconds_left > 0 && (state === 'valid' || state === 'expiring')) {
        line += ' · ' + formatDuration(s.seconds_left) + ' left';
      }
      box.setAttribute('data-state', state);
      if (!o.unstyled) dot.style.background = DOT_COLORS[state] || '#6e7781';
      box.title = err ? err.message : (s.hint || '');
      text.textContent = line;
      login.hidden = !s || s.configured === false || state === 'valid';
      if (o.onStatus) o.onStatus(s, err);
    }, o.intervalMs);
    return { element: box, flow: flow, destroy: function () { flow.stopPolling(); box.remove(); } };
  }

  /**
   * Resolve with the status when kited holds a valid token; otherwise reject with
   * Error("Kite login required: <what to do>") (error.status holds the status).
   * @param {{baseUrl?:string}} [options]
   * @returns {Promise<object>} the status
   */
  async function ensureValidToken(options) {
    var flow = new KiteTokenFlow((options || {}).baseUrl);
    var s = await flow.status();
    if (s.valid && s.configured !== false) return s;
    var err = new Error('Kite login required: ' + (s.hint || ('token state is ' + stateWord(s))));
    err.status = s;
    throw err;
  }

  return {
    KiteTokenFlow: KiteTokenFlow,
    createTokenRefreshButton: createTokenRefreshButton,
    createTokenStatusIndicator: createTokenStatusIndicator,
    ensureValidToken: ensureValidToken
  };
}));
