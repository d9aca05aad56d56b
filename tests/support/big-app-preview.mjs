// Owns the preview input of an app installed by 10,000 tenants with one edit, shared by the browser test and bench/preview.mjs.

/** How many tenants install the app; every one pins a password-grant revision, so every one loses the grant on update. */
export const BIG_APP_TENANTS = 10000;

/**
 * The `preview` input: app `big` (two password-grant revisions, both with client_id `big-1`),
 * installed by `tenants` tenants pinning rev 1 or rev 2 in turn (every 17th one SSO-only), and
 * the edit that moves it to `client_credentials`. A plain JSON value, so it can be handed to a
 * page through `page.evaluate`.
 */
export function bigAppPreviewInput(tenants = BIG_APP_TENANTS) {
  const list = [];
  for (let i = 0; i < tenants; i += 1) {
    list.push({ tenant: `t${String(i).padStart(5, '0')}`, sso_required: i % 17 === 0, password_max_age_days: null,
      installs: [{ app_id: 'big', rev: 1 + (i % 2) }] });
  }
  return {
    state: {
      apps: [{ app_id: 'big', created_at: '2020-01-01T00:00:00Z', revisions: [
        { rev: 1, at: '2020-01-01T00:00:00Z', client_id: 'big-1', grant_type: 'password', scopes: ['read'] },
        { rev: 2, at: '2021-01-01T00:00:00Z', client_id: 'big-1', grant_type: 'password', scopes: ['read', 'write'] }] }],
      tenants: list,
      client_ids_in_use: [],
    },
    now: '2026-11-25T12:00:00Z',
    edit: { app_id: 'big', grant_type: 'client_credentials' },
  };
}
