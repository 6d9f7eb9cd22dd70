/* app.js — the kited token page (GET /). Uses kite-token-flow.js, loaded before it. */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var KTF = window.KiteTokenFlow;
  var errorEl = $('error');
  var errorHome = errorEl.parentNode;
  var errorNext = errorEl.nextSibling;
  var accessToken = '';
  var statusErrorShown = false;

  if (!KTF) {
    errorEl.textContent = 'kite-token-flow.js did not load; reload the page.';
    errorEl.hidden = false;
    return;
  }
  var flow = new KTF(window.location.origin);

  /* The badge beside the label is a symbol (the label says it in words), never the raw state. */
  var BADGES = {
    valid: '✓',
    expiring: '!',
    expired: '✕',
    invalidated: '✕',
    none: '–',
    'not-configured': '⚙',
    unknown: '…',
    unreachable: '✕'
  };

  /* Where each state puts the person in the progress list (set up, log in, stored, use). */
  var PROGRESS = { 'not-configured': 0, none: 1, expired: 1, invalidated: 1, expiring: 1, valid: 3 };

  var LABELS = {
    valid: 'Token valid',
    expiring: 'Expiring soon: log in again',
    expired: 'Expired: log in required',
    invalidated: 'Invalidated: log in required',
    none: 'Login required',
    'not-configured': 'Not configured',
    unknown: 'Checking…',
    unreachable: 'kited not reachable'
  };

  /**
   * Show an error message; `where` (an element) holds it, else its usual place at the top.
   * An empty message hides it.
   */
  function showError(msg, where) {
    errorEl.textContent = msg || '';
    errorEl.hidden = !msg;
    if (where) where.appendChild(errorEl);
    else if (errorEl.parentNode !== errorHome) errorHome.insertBefore(errorEl, errorNext);
  }

  function setText(id, text) { $(id).textContent = text == null ? '' : String(text); }

  /* Text where `backticked` parts become <code>, built with text nodes only (never HTML). */
  function setRich(id, text) {
    var el = $(id);
    el.textContent = '';
    String(text == null ? '' : text).split('`').forEach(function (part, i) {
      if (!part) return;
      if (i % 2) {
        var code = document.createElement('code');
        code.textContent = part;
        el.appendChild(code);
      } else {
        el.appendChild(document.createTextNode(part));
      }
    });
  }

  /* Bring a message the person must see into view (it may appear below the fold). */
  function bringIntoView(el) {
    if (el && el.scrollIntoView) el.scrollIntoView({ block: 'nearest' });
  }

  function expiresText(s) {
    if (!s.expires_at) return s.configured === false ? '—' : 'No token: log in (step 2)';
    var at = KTF.formatIst(s.expires_at);
    var left = typeof s.seconds_left === 'number' ? s.seconds_left : null;
    if (s.state === 'invalidated') return 'Invalidated (would have expired at ' + at + ')';
    if (s.state === 'expired' || (left !== null && left <= 0)) {
      return 'Expired at ' + at + (left !== null && left < 0 ? ' (' + KTF.formatDuration(-left) + ' ago)' : '');
    }
    return 'Expires at ' + at + (left !== null ? ' (in ' + KTF.formatDuration(left) + ')' : '');
  }

  function render(s, err) {
    var stateEl = $('state');
    $('step-status').classList.toggle('stale', !!err);
    if (err) {
      setText('state-label', LABELS.unreachable);
      stateEl.textContent = BADGES.unreachable;
      stateEl.setAttribute('data-state', 'unreachable');
      showError(err.message + ' Is kited running? Start it with `systemctl --user start kited` ' +
        '(or run `kited` in a terminal), then this page carries on by itself.');
      statusErrorShown = true;
      renderProgress(null);
      return;
    }
    if (statusErrorShown && errorEl.parentNode === errorHome) showError('');
    statusErrorShown = false;
    var word = KTF.stateWord(s);
    stateEl.textContent = BADGES[word] || '?';
    stateEl.setAttribute('data-state', word);
    stateEl.setAttribute('title', LABELS[word] || word);
    var configured = s.configured !== false;
    $('login-button').disabled = !configured;
    $('login-blocked').hidden = configured;
    renderProgress(word);
    setText('state-label', LABELS[word] || word);
    setText('user-name', s.user_name || '');
    setText('user-id', s.user_id ? '(' + s.user_id + ')' : '');
    setText('expires', expiresText(s));
    setText('profile', s.profile || 'default');
    if (s.hint) setRich('hint', s.hint);
    document.title = (word === 'valid' ? '✓ ' : '! ') + 'kited — ' + (LABELS[word] || word);
    document.body.setAttribute('data-state', word);
    $('step-status').classList.toggle('done', word === 'valid');
  }

  /* Marks the steps before the person's place done, and that place current. */
  function renderProgress(word) {
    var at = word != null && word in PROGRESS ? PROGRESS[word] : -1;
    var items = $('progress').getElementsByTagName('li');
    for (var i = 0; i < items.length; i++) {
      items[i].classList.toggle('done', at >= 0 && i < at);
      items[i].classList.toggle('current', i === at);
      if (i === at) items[i].setAttribute('aria-current', 'step');
      else items[i].removeAttribute('aria-current');
    }
  }

  function refreshStatus() {
    return flow.status().then(function (s) { render(s); }, function (e) { render(null, e); });
  }

  /* Copy text to the clipboard: the async API where allowed, else a hidden textarea. */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }
  function legacyCopy(text) {
    return new Promise(function (resolve, reject) {
      var ta = document.createElement('textarea');
      ta.value = text;
      ta.setAttribute('readonly', '');
      ta.className = 'offscreen';
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      ta.remove();
      if (ok) resolve(); else reject(new Error('Copy failed: select the text and copy it by hand.'));
    });
  }

  // Step 2: log in with Kite in this tab; Kite comes back to /auth/callback, which links back here.
  $('login-button').addEventListener('click', function () {
    var btn = this;
    btn.disabled = true;
    showError('');
    flow.refreshInfo().then(function (info) {
      window.location.assign(info.login_url);
    }, function (e) {
      btn.disabled = false;
      showError(e.message);
    });
  });

  $('copy-callback').addEventListener('click', function () {
    var btn = this;
    copyText($('callback-url').textContent).then(function () {
      btn.textContent = 'Copied';
      setTimeout(function () { btn.textContent = 'Copy'; }, 2000);
    }, function (e) { showError(e.message); });
  });

  // Step 3: paste the redirected URL or the bare request token.
  function setToken(token) {
    accessToken = token || '';
    setText('token', accessToken);
    $('token').hidden = true;
    $('token-mask').hidden = false;
    $('reveal-token').textContent = 'Reveal';
    $('reveal-token').setAttribute('aria-pressed', 'false');
    $('token-box').hidden = !accessToken;
    setText('copy-status', '');
  }

  $('paste-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var result = $('result');
    var submit = $('paste-submit');
    var token;
    showError('');
    setToken('');
    result.className = 'result';
    result.textContent = '';
    try {
      token = KTF.extractRequestToken($('paste-input').value);
    } catch (e) {
      result.className = 'result failure';
      showError(e.message, result);
      bringIntoView(result);
      return;
    }
    submit.disabled = true;
    result.textContent = 'Exchanging the request token…';
    flow.generate(token).then(function (data) {
      $('paste-input').value = '';
      result.className = 'result success';
      result.textContent = 'Logged in as ' + (data.user_name || data.user_id) + ' (' + data.user_id + '). ' +
        'kited has stored the new token: programs get it with "kitectl get-token".';
      setToken(data.access_token);
      bringIntoView($('token-box'));
      refreshStatus();
    }, function (e) {
      result.className = 'result failure';
      result.textContent = '';
      showError(e.message, result);
      bringIntoView(result);
    }).then(function () { submit.disabled = false; });
  });

  $('reveal-token').addEventListener('click', function () {
    var show = $('token').hidden;
    $('token').hidden = !show;
    $('token-mask').hidden = show;
    this.textContent = show ? 'Hide' : 'Reveal';
    this.setAttribute('aria-pressed', String(show));
  });

  $('copy-token').addEventListener('click', function () {
    if (!accessToken) return;
    copyText(accessToken).then(function () { setText('copy-status', 'Copied.'); },
      function (e) { setText('copy-status', e.message); });
  });

  // A request_token in this page's own address (e.g. "/" registered as the redirect URL):
  // prefill the box, but let the person press the button.
  var own = new URLSearchParams(window.location.search);
  if (own.get('request_token')) {
    $('paste-input').value = window.location.href;
    if (window.history && history.replaceState) history.replaceState(null, '', window.location.pathname);
  }

  flow.callbackUrl().then(function (u) {
    setText('callback-url', u);
    $('paste-input').placeholder = u + '?…&request_token=…';
  }, function () { /* keep the defaults */ });
  // Step 1: now, every 30 s while visible, and at once on focus / becoming visible.
  flow.startPolling(render, 30000);
}());
