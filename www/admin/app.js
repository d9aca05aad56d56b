// The admin page: plain ES module, no build step. It loads the policy module through the
// wasm-bindgen glue in ./pkg/ (the same _bg.wasm the server runs), previews every edit in the
// browser, and saves through the admin API, which judges it again with that module.

import init, { callJson } from './pkg/granted_policy.js';

const API = '/admin/api/v1';
const TOKEN_KEY = 'granted-admin-token';
const GRANT_TYPES = ['password', 'client_credentials', 'authorization_code', 'implicit'];

const $ = (id) => document.getElementById(id);

/** Builds an element; children are nodes or text (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function badge(kind, text) {
  return h('span', { class: `badge ${kind}` }, text);
}

const STATUS_TEXT = {
  available: 'password grant available',
  kept: 'kept until tenants update',
  retired: 'password grant retired',
  never: 'never had the password grant',
};

function statusBadge(grant) {
  const text = grant.status === 'kept'
    ? `kept by ${grant.tenants_keeping.length} tenant(s) until they update`
    : STATUS_TEXT[grant.status] || grant.status;
  return badge(grant.status, text);
}

/** A table whose cells carry their column's name, so that at 390 px each row reads as a card
 *  (style.css) instead of a table clipped at the right. */
function table(id, columns, rows, empty, caption) {
  return h('div', { class: 'table-wrap' }, h('table', { id, class: 'stack' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length
      ? rows.map((cells) => h('tr', {}, cells.map((cell, i) => h('td', { 'data-label': columns[i] }, cell))))
      : h('tr', {}, h('td', { colspan: columns.length }, empty)))));
}

/** The redirect URIs in a textarea: one per line. */
function uriList(text) {
  return text.split(/\s+/).filter(Boolean);
}

/** The fields of the way forward: redirect URIs and client type (RULES.md §5, A6–A7). */
function codeFields(prefix, revision = {}) {
  const uris = h('textarea', { id: `${prefix}-redirect-uris`, name: 'redirect_uris', rows: 3, autocomplete: 'off',
    spellcheck: 'false', 'aria-describedby': `${prefix}-redirect-help` }, (revision.redirect_uris ?? []).join('\n'));
  const type = h('select', { id: `${prefix}-client-type`, name: 'client_type' },
    ['confidential', 'public'].map((t) => h('option', { value: t, selected: t === (revision.client_type ?? 'confidential') }, t)));
  const fields = h('div', { class: 'code-fields' },
    h('label', { for: `${prefix}-redirect-uris` }, 'Redirect URIs (authorization_code; one per line)'), uris,
    h('p', { id: `${prefix}-redirect-help`, class: 'help' },
      'https, http on 127.0.0.1, [::1] or localhost, or an app scheme with a dot (com.example.app:/cb); no fragment, no wildcard.'),
    h('label', { for: `${prefix}-client-type` }, 'Client type'), type,
    h('p', { class: 'help' }, 'public: a browser or mobile app that holds no secret and relies on PKCE alone.'));
  return { uris, type, fields };
}

function yesNo(value, yes = 'yes', no = 'no') {
  return value ? badge('yes', yes) : badge('no', no);
}

// --- state -----------------------------------------------------------------------------------

let token = sessionStorage.getItem(TOKEN_KEY);
let policyReady = null;

async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token}`, ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.status === 401) {
    signOut('The admin token was refused: sign in again.');
  }
  return { status: response.status, etag: response.headers.get('etag'), data };
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

function showSignIn(message = '') {
  $('nav').hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  $('token').focus();
}

// --- the policy module and its digest --------------------------------------------------------

async function hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function loadPolicy() {
  const bytes = await (await fetch('pkg/granted_policy_bg.wasm')).arrayBuffer();
  const ours = await hex(bytes);
  await init({ module_or_path: bytes });
  const digest = $('digest');
  digest.replaceChildren('Policy module ', h('code', { id: 'digest-value', title: ours }, ours.slice(0, 16) + '…'), ' ');
  let theirs = null;
  try {
    theirs = (await (await fetch('/healthz')).json()).policy_sha256;
  } catch { theirs = null; }
  if (theirs === ours) {
    digest.append(h('span', { class: 'ok', id: 'digest-match' }, '✓ the server runs the same module'));
  } else {
    digest.append(h('span', { class: 'error', id: 'digest-match' }, '✗ differs from the server'));
    const alert = $('mismatch');
    alert.hidden = false;
    alert.textContent = `Warning: this page's policy module (${ours.slice(0, 16)}…) is not the one the server enforces `
      + `(${theirs ? theirs.slice(0, 16) + '…' : 'unknown'}). Previews here may not match what saving does.`;
  }
  return ours;
}

// --- views -----------------------------------------------------------------------------------

async function route() {
  if (!token) return showSignIn();
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  await policyReady;
  const hash = location.hash || '#/apps';
  const view = $('view');
  const app = hash.match(/^#\/apps\/(.+)$/);
  const tenant = hash.match(/^#\/tenants\/(.+)$/);
  try {
    if (app) await appView(view, decodeURIComponent(app[1]));
    else if (tenant) await tenantView(view, decodeURIComponent(tenant[1]));
    else if (hash === '#/tenants') await tenantsView(view);
    else if (hash === '#/sunset') await sunsetView(view);
    else await appsView(view);
  } catch (e) {
    view.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
}

async function appsView(view) {
  const { status, data } = await api('/apps');
  if (status !== 200) throw new Error(data?.message || `status ${status}`);
  const rows = data.apps.map((a) => [
    h('a', { href: `#/apps/${encodeURIComponent(a.app_id)}` }, a.app_id),
    statusBadge(a.password_grant),
    a.latest ? `rev ${a.latest.rev}: ${a.latest.client_id}, ${a.latest.grant_type}` : '—',
    String(a.installs),
  ]);
  view.replaceChildren(
    h('h2', {}, 'Apps'),
    table('apps', ['App', 'Password grant', 'Latest revision', 'Installs'], rows, 'No app yet.'),
    await newAppForm(view),
  );
}

/** The form for a new app: previewed in the browser on the server's create context. */
async function newAppForm(view) {
  const { status, data: context } = await api('/create-context');
  if (status !== 200) return h('p', { class: 'error' }, `The new-app form is unavailable (${status}).`);
  const appId = h('input', { id: 'new-app-id', name: 'app_id', autocomplete: 'off', required: true });
  const clientId = h('input', { id: 'new-client-id', name: 'client_id', autocomplete: 'off', required: true });
  const grant = h('select', { id: 'new-grant-type', name: 'grant_type' },
    GRANT_TYPES.map((g) => h('option', { value: g, selected: g === 'client_credentials' }, g)));
  const scopes = h('input', { id: 'new-scopes', name: 'scopes', autocomplete: 'off' });
  const code = codeFields('new');
  const panel = h('div', { id: 'new-preview', class: 'card preview', 'aria-live': 'polite' }, 'Fill in the app to see what the policy says.');
  const create = h('button', { type: 'submit', id: 'create', disabled: true }, 'Create app');
  const result = h('p', { id: 'create-result', role: 'status' });
  let current = null;

  function proposal() {
    const app = { app_id: appId.value, client_id: clientId.value, grant_type: grant.value, scopes: scopes.value.split(/\s+/).filter(Boolean) };
    const uris = uriList(code.uris.value);
    if (uris.length) app.redirect_uris = uris;
    if (code.type.value !== 'confidential') app.client_type = code.type.value;
    return app;
  }

  function update() {
    if (!appId.value || !clientId.value) {
      current = null;
      create.disabled = true;
      panel.className = 'card preview';
      panel.replaceChildren('Fill in the app id and the client_id to see what the policy says.');
      return;
    }
    const app = proposal();
    const answer = JSON.parse(callJson('preview', JSON.stringify({ ...context, create: app })));
    if (!answer.ok) {
      current = null;
      create.disabled = true;
      panel.className = 'card preview rejected';
      panel.replaceChildren(h('p', { class: 'error' }, `The policy module refused the input: ${answer.error?.message}`));
      return;
    }
    current = { app, preview: answer.ok };
    renderPreview(panel, answer.ok);
    create.disabled = !answer.ok.accepted;
  }

  async function submit(event) {
    event.preventDefault();
    if (!current || create.disabled) return;
    const shown = current.preview;
    create.disabled = true;
    const answer = await api('/apps', { method: 'POST', body: current.app });
    if (answer.data?.preview && canonical(answer.data.preview) !== canonical(shown)) {
      const alert = $('mismatch');
      alert.hidden = false;
      alert.textContent = 'The server decided differently from the preview shown here. Check the app before anything else.';
    }
    if (answer.status === 201) {
      const secret = answer.data.client_secret;
      await appsView(view);
      $('create-result').replaceChildren(`Created ${answer.data.app_id}. Client secret for ${secret.client_id}, shown only now: `,
        h('code', { id: 'new-secret' }, secret.secret));
      return;
    }
    result.className = 'error';
    result.textContent = `Not created: ${answer.data?.message || `status ${answer.status}`}`;
    update();
  }

  for (const input of [appId, clientId, grant, scopes, code.uris, code.type]) input.addEventListener('input', update);
  return h('form', { class: 'card', id: 'new-app', onsubmit: submit, 'aria-labelledby': 'new-app-title' },
    h('h3', { id: 'new-app-title' }, 'New app'),
    h('label', { for: 'new-app-id' }, 'App id'), appId,
    h('label', { for: 'new-client-id' }, 'client_id'), clientId,
    h('label', { for: 'new-grant-type' }, 'Grant type'), grant,
    h('label', { for: 'new-scopes' }, 'Scopes (space-separated)'), scopes,
    code.fields,
    panel, create, result);
}

function sameList(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Canonical JSON: keys sorted, to compare the browser's preview with the server's. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

async function appView(view, appId) {
  const [appAnswer, ctxAnswer] = await Promise.all([
    api(`/apps/${encodeURIComponent(appId)}`),
    api(`/apps/${encodeURIComponent(appId)}/edit-context`),
  ]);
  if (appAnswer.status !== 200) throw new Error(appAnswer.data?.message || `status ${appAnswer.status}`);
  if (ctxAnswer.status !== 200) throw new Error(ctxAnswer.data?.message || `status ${ctxAnswer.status}`);
  const app = appAnswer.data;
  const context = ctxAnswer.data;
  const etag = ctxAnswer.etag;
  const latest = app.revisions[app.revisions.length - 1];

  const timeline = h('ol', { class: 'timeline', id: 'timeline' }, app.revisions.map((r) => h('li', {},
    h('strong', {}, `Revision ${r.rev}`), ` — ${r.at.slice(0, 10)} — `, h('code', {}, r.client_id), `, ${r.grant_type} `,
    r.password_eligible ? badge('yes', 'password-eligible') : badge('no', r.ineligible_because ? `not eligible: ${r.ineligible_because}` : 'not eligible'),
    r.grant_type === 'authorization_code' ? h('div', { class: 'help' }, `${r.client_type ?? 'confidential'} client; redirect URIs: `,
      (r.redirect_uris ?? []).flatMap((u, i) => [i ? ', ' : '', h('code', {}, u)])) : null,
  )));
  const installs = table('installs', ['Tenant', 'Pinned revision', 'Password grant now', 'After updating'],
    app.installs.map((i) => [
      [i.tenant, i.sso_required ? ' (SSO only)' : ''],
      `${i.rev}${i.up_to_date ? ' (latest)' : ''}`,
      yesNo(i.password_now),
      i.password_now && !i.password_after_update ? badge('loses', 'loses it') : yesNo(i.password_after_update),
    ]), 'No tenant installs this app.');

  // The edit form: every change previews locally with the policy module.
  const grant = h('select', { id: 'edit-grant-type', name: 'grant_type' },
    GRANT_TYPES.map((g) => h('option', { value: g, selected: g === latest.grant_type }, g)));
  const clientId = h('input', { id: 'edit-client-id', name: 'client_id', value: latest.client_id, autocomplete: 'off' });
  const scopes = h('input', { id: 'edit-scopes', name: 'scopes', value: latest.scopes.join(' '), autocomplete: 'off', 'aria-describedby': 'scopes-help' });
  const code = codeFields('edit', latest);
  const confirm = h('input', { id: 'edit-confirm', name: 'confirm', autocomplete: 'off' });
  const confirmBox = h('div', { id: 'confirm-box', hidden: true },
    h('label', { for: 'edit-confirm' }, `This cannot be undone. Type the app id (${app.app_id}) to confirm`), confirm);
  const save = h('button', { type: 'submit', id: 'save', disabled: true }, 'Save revision');
  const panel = h('div', { id: 'preview', class: 'card preview', 'aria-live': 'polite' }, 'Change a field to see what the edit does.');
  const result = h('p', { id: 'save-result', role: 'status' });
  let current = null;

  function proposal() {
    const edit = { app_id: app.app_id };
    if (grant.value !== latest.grant_type) edit.grant_type = grant.value;
    if (clientId.value !== latest.client_id) edit.client_id = clientId.value;
    const list = scopes.value.split(/\s+/).filter(Boolean);
    if (!sameList(list, latest.scopes)) edit.scopes = list;
    const uris = uriList(code.uris.value);
    if (!sameList(uris, latest.redirect_uris ?? [])) edit.redirect_uris = uris;
    if (code.type.value !== (latest.client_type ?? 'confidential')) edit.client_type = code.type.value;
    return edit;
  }

  function update() {
    const edit = proposal();
    confirmBox.hidden = true;
    if (Object.keys(edit).length === 1) {
      current = null;
      save.disabled = true;
      panel.className = 'card preview';
      panel.replaceChildren('No change yet: change a field to see what the edit does.');
      return;
    }
    // The module's JSON face: for a large app (thousands of installing tenants) JSON text
    // crosses into wasm faster than JavaScript objects do (see tests/browser/).
    const answer = JSON.parse(callJson('preview', JSON.stringify({ ...context, edit })));
    if (!answer.ok) {
      current = null;
      save.disabled = true;
      panel.className = 'card preview rejected';
      panel.replaceChildren(h('p', { class: 'error' }, `The policy module refused the input: ${answer.error?.message}`));
      return;
    }
    current = { edit, preview: answer.ok };
    renderPreview(panel, current.preview);
    const p = current.preview;
    confirmBox.hidden = !(p.accepted && p.irreversible);
    save.disabled = !p.accepted || (p.irreversible && confirm.value !== app.app_id);
  }

  async function submit(event) {
    event.preventDefault();
    if (!current || save.disabled) return;
    const body = { ...current.edit };
    delete body.app_id;
    const shown = current.preview;
    save.disabled = true;
    const answer = await api(`/apps/${encodeURIComponent(app.app_id)}/revisions`, { method: 'POST', body, headers: { 'If-Match': etag } });
    const serverPreview = answer.data?.preview;
    if (serverPreview && canonical(serverPreview) !== canonical(shown)) {
      const alert = $('mismatch');
      alert.hidden = false;
      alert.textContent = 'The server decided differently from the preview shown here. Check the app before anything else.';
    }
    if (answer.status === 201) {
      await appView(view, app.app_id);
      $('save-result').textContent = `Saved revision ${answer.data.revision.rev}.`
        + (answer.data.client_secret ? ` New client secret for ${answer.data.client_secret.client_id} (shown once): ${answer.data.client_secret.secret}` : '');
      return;
    }
    if (answer.status === 409) {
      await appView(view, app.app_id);
      $('save-result').textContent = 'Someone changed this app meanwhile; this page now shows its latest revision. Review and save again.';
      return;
    }
    result.className = 'error';
    result.textContent = `Not saved: ${answer.data?.message || `status ${answer.status}`}`;
    update();
  }

  for (const input of [grant, clientId, scopes, code.uris, code.type]) input.addEventListener('input', update);
  confirm.addEventListener('input', update);

  view.replaceChildren(
    h('p', {}, h('a', { href: '#/apps' }, '← Apps')),
    h('h2', {}, `App ${app.app_id} `, statusBadge(app.password_grant)),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'history-title' }, h('h3', { id: 'history-title' }, 'Revision history'), timeline),
      h('section', { class: 'card', 'aria-labelledby': 'installs-title' }, h('h3', { id: 'installs-title' }, 'Installing tenants'), installs)),
    h('form', { class: 'card', id: 'edit', onsubmit: submit, 'aria-labelledby': 'edit-title' },
      h('h3', { id: 'edit-title' }, `Edit: a new revision after ${latest.rev}`),
      h('label', { for: 'edit-grant-type' }, 'Grant type'), grant,
      h('label', { for: 'edit-client-id' }, 'client_id'), clientId,
      h('label', { for: 'edit-scopes' }, 'Scopes'), scopes,
      h('p', { id: 'scopes-help' }, 'Space-separated scope tokens.'),
      code.fields,
      panel, confirmBox, save, result),
  );
}

function renderPreview(panel, p) {
  panel.className = `card preview ${p.accepted ? 'accepted' : 'rejected'}`;
  const losing = new Set(p.tenants_losing_password_on_update);
  const keep = p.tenants.filter((t) => t.password_now && !losing.has(t.tenant) && t.password_after_update);
  const rows = p.tenants.map((t) => [
    [t.tenant, t.sso_required ? ' (SSO only)' : ''],
    String(t.pinned_rev),
    yesNo(t.password_now),
    losing.has(t.tenant) ? badge('loses', 'keeps it until it updates, then loses it') : yesNo(t.password_after_update),
  ]);
  panel.replaceChildren(...[
    h('h4', { id: 'preview-verdict' }, p.accepted ? 'Accepted' : 'Rejected: this edit cannot be saved'),
    h('p', { id: 'preview-explanation' }, p.explanation),
    p.reason ? h('p', {}, 'Reason: ', h('code', { id: 'preview-reason' }, p.reason), ' (rule ', h('code', { id: 'preview-rule' }, p.rule), ')') : null,
    p.accepted && p.irreversible ? h('p', { class: 'warn', id: 'preview-irreversible' },
      'Irreversible: saving ends the password grant for this app for good. No later revision can bring it back.') : null,
    p.accepted && p.way_forward === 'authorization_code' ? h('p', { class: 'forward', id: 'preview-way-forward' },
      'The way forward: ',
      losing.size ? `${[...losing].join(', ')} keep the password grant until they update; from then on, their users sign in on this server's page`
        : 'users of the tenants that update sign in on this server\'s page',
      ' (authorization code with PKCE), and the app stops receiving their passwords.') : null,
    p.tenants.length ? table('preview-tenants', ['Tenant', 'Pinned revision', 'Password grant now', 'After updating'], rows, '',
      `Tenants: ${losing.size} lose the password grant when they update; ${keep.length} keep it.`) : h('p', {}, 'No tenant installs this app.'),
  ].filter(Boolean));
}

function barChart(title, daily) {
  const width = 600;
  const height = 160;
  const max = Math.max(1, ...daily.map((d) => d.count));
  const bar = width / daily.length;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height + 34}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const total = daily.reduce((s, d) => s + d.count, 0);
  svg.setAttribute('aria-label', `${title}: ${total} password-grant tokens over the last ${daily.length} days, at most ${max} a day`);
  daily.forEach((d, i) => {
    const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    const hgt = (d.count / max) * height;
    rect.setAttribute('x', String(i * bar + 1));
    rect.setAttribute('y', String(height - hgt));
    rect.setAttribute('width', String(Math.max(1, bar - 2)));
    rect.setAttribute('height', String(hgt));
    rect.setAttribute('fill', '#0b57d0');
    const tip = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    tip.textContent = `${d.date}: ${d.count}`;
    rect.append(tip);
    svg.append(rect);
  });
  const axis = document.createElementNS('http://www.w3.org/2000/svg', 'text');
  axis.setAttribute('x', '0');
  axis.setAttribute('y', String(height + 28));
  axis.setAttribute('font-size', '22');
  axis.textContent = `${daily[0]?.date ?? ''} … ${daily[daily.length - 1]?.date ?? ''} (max ${max}/day)`;
  svg.append(axis);
  return svg;
}

async function tenantsView(view) {
  const { status, data } = await api('/tenants');
  if (status !== 200) throw new Error(data?.message || `status ${status}`);
  view.replaceChildren(
    h('h2', {}, 'Tenants'),
    table('tenants', ['Tenant', 'Installs', 'Password expiry', 'SSO only'], data.tenants.map((t) => [
      h('a', { href: `#/tenants/${encodeURIComponent(t.tenant)}` }, t.tenant),
      t.installs.map((i) => `${i.app_id} (rev ${i.rev})`).join(', ') || '—',
      t.password_max_age_days ? `${t.password_max_age_days} days` : 'never',
      yesNo(t.sso_required),
    ]), 'No tenant yet.'),
  );
}

/** A tenant's users, each with the apps they allowed on the consent page (withdrawable). */
async function tenantView(view, tenant) {
  const path = `/tenants/${encodeURIComponent(tenant)}/users`;
  const { status, data } = await api(path);
  if (status !== 200) throw new Error(data?.message || `status ${status}`);
  const consents = await Promise.all(data.users.map((u) => api(`${path}/${encodeURIComponent(u.username)}/consents`)));
  const result = h('p', { id: 'consent-result', role: 'status' });
  const rows = data.users.map((u, i) => {
    const list = consents[i].status === 200 ? consents[i].data.consents : [];
    return [
      u.username,
      u.sign_in,
      u.disabled ? badge('no', 'disabled') : badge('yes', 'active'),
      list.length ? h('ul', { class: 'consents' }, list.map((c) => h('li', {},
        h('code', {}, c.app_id), ` (${c.scopes.join(' ') || 'no scope'}) `,
        h('button', { type: 'button', class: 'small', 'aria-label': `Withdraw ${u.username}'s consent to ${c.app_id}`,
          onclick: async () => {
            const answer = await api(`${path}/${encodeURIComponent(u.username)}/consents/${encodeURIComponent(c.app_id)}`, { method: 'DELETE' });
            await tenantView(view, tenant);
            $('consent-result').textContent = answer.status === 200
              ? `Withdrawn: ${u.username} will be asked again before ${c.app_id} gets a code.`
              : `Not withdrawn: ${answer.data?.message || `status ${answer.status}`}`;
          } }, 'Withdraw')))) : 'none',
    ];
  });
  view.replaceChildren(
    h('p', {}, h('a', { href: '#/tenants' }, '← Tenants')),
    h('h2', {}, `Tenant ${tenant}`),
    table('users', ['User', 'Signs in', 'Linked at the provider', 'Status', 'Consents (authorization code)'],
      rows.map((cells, i) => {
        const linked = data.users[i].federated_subject;
        return [cells[0], cells[1], linked ? h('code', {}, `${linked.sub} at ${linked.iss}`) : '—', ...cells.slice(2)];
      }), 'No user in this tenant.'),
    result,
    await providerForm(view, tenant),
  );
}

/** The tenant's identity provider (RULES.md §6): A9 judged in the browser by the module as the
 *  admin types, the provider's discovery document checked by the server, then saved with the
 *  version it was read at. The client secret is write-only: left empty, the stored one is kept. */
async function providerForm(view, tenant) {
  const path = `/tenants/${encodeURIComponent(tenant)}/identity-provider`;
  const stored = await api(path);
  const current = stored.status === 200 ? stored.data : null;
  const field = (id, label, attrs = {}) => {
    const input = h('input', { id, name: id, autocomplete: 'off', ...attrs });
    return [h('label', { for: id }, label), input];
  };
  const [issuerLabel, issuer] = field('idp-issuer', 'Issuer', { value: current?.issuer ?? '', placeholder: 'https://idp.example.com' });
  const [clientLabel, clientId] = field('idp-client-id', 'client_id at the provider', { value: current?.client_id ?? '' });
  const [secretLabel, secret] = field('idp-client-secret', current ? 'Client secret (empty: keep the stored one)' : 'Client secret', { type: 'password' });
  const [scopesLabel, scopes] = field('idp-scopes', 'Scopes (space-separated)', { value: (current?.scopes ?? ['openid', 'profile', 'email']).join(' ') });
  const [claimLabel, claim] = field('idp-username-claim', 'Username claim', { value: current?.username_claim ?? 'preferred_username' });
  const link = h('input', { id: 'idp-link-existing', type: 'checkbox', checked: current?.link_existing ?? false });
  const provision = h('input', { id: 'idp-provision', type: 'checkbox', checked: current?.provision ?? false });
  const verdict = h('p', { id: 'idp-verdict', role: 'status' });
  const found = h('div', { id: 'idp-found', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', id: 'idp-save' }, current ? 'Save provider' : 'Set provider');
  const result = h('p', { id: 'idp-result', role: 'status' });

  function proposal() {
    return {
      issuer: issuer.value.trim(), client_id: clientId.value.trim(),
      scopes: scopes.value.split(/\s+/).filter(Boolean), username_claim: claim.value.trim(),
      link_existing: link.checked, provision: provision.checked,
    };
  }
  function judge() {
    const answer = JSON.parse(callJson('identity_provider', JSON.stringify({ provider: proposal() })));
    const ok = answer.ok?.accepted === true;
    verdict.className = ok ? '' : 'error';
    verdict.textContent = answer.ok ? answer.ok.explanation : `The policy module refused the input: ${answer.error?.message}`;
    save.disabled = !ok;
    return ok;
  }
  async function check() {
    found.replaceChildren('Fetching the discovery document…');
    const answer = await api(`${path}/check`, { method: 'POST', body: { issuer: issuer.value.trim() } });
    if (answer.status !== 200) {
      found.replaceChildren(h('p', { class: 'error' }, answer.data?.message || `status ${answer.status}`));
      return;
    }
    const d = answer.data;
    found.replaceChildren(d.ok
      ? h('dl', { class: 'found' },
        h('dt', {}, 'Issuer'), h('dd', {}, d.discovery.issuer),
        h('dt', {}, 'Sign-in at'), h('dd', {}, d.discovery.authorization_endpoint),
        h('dt', {}, 'Token endpoint'), h('dd', {}, d.discovery.token_endpoint),
        h('dt', {}, 'Keys'), h('dd', {}, d.discovery.jwks_uri),
        h('dt', {}, 'ID token algorithms'), h('dd', {}, d.discovery.id_token_signing_alg_values_supported.join(', ') || 'not said'),
        h('dt', {}, 'Sends iss back (RFC 9207)'), h('dd', {}, yesNo(d.discovery.authorization_response_iss_parameter_supported)))
      : h('p', { class: 'error' }, `Not usable (${d.problem}): ${d.message}`));
  }
  async function submit(event) {
    event.preventDefault();
    if (!judge()) return;
    const body = proposal();
    if (secret.value) body.client_secret = secret.value;
    const headers = current ? { 'If-Match': stored.etag } : {};
    const answer = await api(path, { method: 'PUT', body, headers });
    if (answer.status === 200 || answer.status === 201) {
      await tenantView(view, tenant);
      $('idp-result').textContent = `Saved: ${tenant}'s users can sign in at ${answer.data.issuer} (version ${answer.data.version}).`;
      return;
    }
    result.className = 'error';
    result.textContent = `Not saved: ${answer.data?.message || `status ${answer.status}`}`;
  }
  async function remove() {
    const answer = await api(path, { method: 'DELETE', headers: { 'If-Match': stored.etag } });
    await tenantView(view, tenant);
    $('idp-result').textContent = answer.status === 200 ? 'Removed: this tenant has no identity provider.' : `Not removed: ${answer.data?.message || `status ${answer.status}`}`;
  }
  for (const input of [issuer, clientId, scopes, claim]) input.addEventListener('input', judge);
  const form = h('form', { class: 'card', id: 'identity-provider', onsubmit: submit, 'aria-labelledby': 'idp-title' },
    h('h3', { id: 'idp-title' }, 'Identity provider (SSO sign-in)'),
    issuerLabel, issuer, clientLabel, clientId, secretLabel, secret, scopesLabel, scopes, claimLabel, claim,
    h('label', { for: 'idp-link-existing', class: 'check' }, link, ' Link a first sign-in to an existing SSO user of that name'),
    h('label', { for: 'idp-provision', class: 'check' }, provision, ' Create an SSO user at a first sign-in that matches none'),
    verdict,
    h('button', { type: 'button', id: 'idp-check', class: 'secondary', onclick: check }, 'Check provider'),
    found, save,
    current ? h('button', { type: 'button', id: 'idp-remove', class: 'secondary', onclick: remove }, 'Remove provider') : null,
    result);
  if (current || issuer.value) judge();
  return form;
}

async function sunsetView(view) {
  const { status, data } = await api('/reports/sunset');
  if (status !== 200) throw new Error(data?.message || `status ${status}`);
  const toMigrate = [];
  for (const app of data.apps) {
    for (const t of app.tenants) {
      if (t.password_now) toMigrate.push({ app, t });
    }
  }
  view.replaceChildren(
    h('h2', {}, 'Sunset dashboard'),
    h('p', {}, `Password-grant tokens: ${data.password_tokens_7_days} in the last 7 days, ${data.password_tokens_30_days} in the last 30 days`
      + (data.audit_log_since ? ` (audit log since ${data.audit_log_since.slice(0, 10)}).` : '.')),
    h('p', { id: 'moved' }, `Already moved to the authorization code flow: ${data.code_tokens_7_days} tokens in the last 7 days, `
      + `${data.code_tokens_30_days} in the last 30 days.`),
    h('div', { class: 'grid', id: 'charts' }, data.apps.map((app) => h('section', { class: 'card' },
      h('h3', {}, app.app_id, ' ', statusBadge({ status: app.status, tenants_keeping: app.tenants_keeping })),
      barChart(`Password-grant use of ${app.app_id}`, app.daily_password_tokens)))),
    h('h3', {}, 'Tenants still to migrate'),
    table('to-migrate', ['App', 'Tenant', 'Pinned revision', 'Updating', 'Password tokens, 30 days', 'Code-flow tokens, 30 days', 'Last password use'],
      toMigrate.map(({ app, t }) => [
        h('a', { href: `#/apps/${encodeURIComponent(app.app_id)}` }, app.app_id),
        t.tenant,
        `${t.pinned_rev} of ${app.latest_rev}`,
        t.update_takes_away_password ? badge('loses', 'takes the password grant away') : badge('yes', 'keeps it'),
        String(t.password_tokens_30_days),
        String(t.code_tokens_30_days),
        t.last_password_use ? t.last_password_use.slice(0, 10) : '—',
      ]), 'No tenant depends on the password grant.'),
  );
}

// --- start -----------------------------------------------------------------------------------

$('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  $('token').value = '';
  const { status } = await api('/apps');
  if (status === 200) {
    sessionStorage.setItem(TOKEN_KEY, token);
    $('sign-in-error').textContent = '';
    await route();
    $('main').focus();
  } else if (status !== 401) {
    $('sign-in-error').textContent = `The server answered ${status}; try again.`;
  }
});
$('sign-out').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
policyReady = loadPolicy().catch((e) => {
  $('digest').textContent = `The policy module did not load: ${e.message}`;
});
route();
