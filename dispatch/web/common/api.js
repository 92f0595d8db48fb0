// The one HTTP client of every page: bearer token, JSON, problem JSON turned into words.
// Pages use only the public /api/v1 (API.md), like any other client.

const CODE_WORDS = {
  already_taken: '已被抢：别人先抢到了这张工单',
  out_of_scope: '不在你的服务范围内',
  limit_reached: '手上的工单已满，先完成几张再抢',
  invalid_transition: '工单当前的状态不允许这个操作',
  concurrent_change: '工单刚被别人改过，请刷新后再试',
  validation_error: '填写的内容有误',
  not_your_ticket: '这不是你的工单',
  bad_credentials: '用户名或密码不对',
  unauthorized: '登录已失效，请重新登录',
  forbidden: '没有权限做这个操作',
  not_found: '没有找到',
  rate_limited: '操作太频繁，请稍后再试',
  off_duty: '你还没有上班',
  off_shift: '现在不在你的排班时间内',
  service_unavailable: '服务暂时不可用，请稍后再试',
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(describe(status, problem));
    this.status = status;
    this.code = problem.code || '';
    this.problem = problem;
  }

  // No such route on this server (an endpoint not deployed yet), as opposed to no such object.
  get missingEndpoint() {
    return this.status === 404 && this.problem.detail === 'Not Found';
  }
}

// What the person reads: our words for the code when we have them, then the server's detail.
function describe(status, problem) {
  const head = CODE_WORDS[problem.code] || problem.title || `请求失败（${status}）`;
  const fields = (problem.errors || []).map((e) => `${e.field}：${e.message}`).join('；');
  const detail = fields || problem.detail || '';
  return detail && detail !== head ? `${head}（${detail}）` : head;
}

async function problemOf(response) {
  try {
    const body = await response.json();
    return typeof body === 'object' && body ? body : {};
  } catch {
    return { title: `服务器返回 ${response.status}` };
  }
}

export class Client {
  // `name` keeps each page's sign-in apart: a console and a phone page may share one browser.
  constructor(name) {
    this.key = `fieldpool.token.${name}`;
    this.token = localStorage.getItem(this.key);
    this.takeTokenFromUrl();
  }

  // Hook for WeChat OAuth (/wechat/oauth/start?next=...): the callback sends the person back to
  // `next` with `#access_token=...&token_type=bearer&role=...` in the fragment (never sent to
  // servers or logs); we keep the token and clean the address bar.
  takeTokenFromUrl() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const token = fragment.get('access_token');
    if (token) {
      this.setToken(token);
      for (const key of ['access_token', 'token_type', 'role']) fragment.delete(key);
      const rest = fragment.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
    }
  }

  setToken(token) {
    this.token = token;
    if (token) localStorage.setItem(this.key, token);
    else localStorage.removeItem(this.key);
  }

  async signIn(username, password) {
    const form = new URLSearchParams({ username, password });
    const response = await fetch('/api/v1/auth/token', { method: 'POST', body: form });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const body = await response.json();
    this.setToken(body.access_token);
    return body;
  }

  signOut() {
    this.setToken(null);
  }

  headers(extra = {}) {
    return this.token ? { Authorization: `Bearer ${this.token}`, ...extra } : extra;
  }

  // fetch with the token; throws ApiError (with words) on any 4xx/5xx.
  async raw(path, { method = 'GET', json, body, headers = {} } = {}) {
    const init = { method, headers: this.headers(headers) };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['Content-Type'] = 'application/json';
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { title: '网络不通，请检查网络后重试' });
    }
    if (response.status === 401 && this.token) this.onSignedOut?.();
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    return response;
  }

  async call(path, options) {
    const response = await this.raw(path, options);
    return response.status === 204 ? null : response.json();
  }

  get(path) { return this.call(path); }
  post(path, json = {}, headers = {}) { return this.call(path, { method: 'POST', json, headers }); }
  put(path, json) { return this.call(path, { method: 'PUT', json }); }
  patch(path, json) { return this.call(path, { method: 'PATCH', json }); }

  upload(ticketId, file) {
    const form = new FormData();
    form.append('file', file);
    return this.call(`/api/v1/tickets/${ticketId}/attachments`, { method: 'POST', body: form });
  }
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  return q.toString();
};
