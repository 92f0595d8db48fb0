// Every error a page shows, in Chinese, from one table keyed by the problem's `code` (API.md): the
// server's title and detail are English for developers and logs, never for the person at the screen.
// Codes the page makes itself (no network, the phone's position refused) live here too.

const WORDS = {
  // tickets and the pool
  already_taken: '已被抢：别人先抢到了这张工单',
  out_of_scope: '不在你的服务范围内',
  limit_reached: '手上的工单已满，先完成几张再抢',
  too_many_grabs: '抢得太快了，请稍等几秒再抢',
  invalid_transition: '工单当前的状态不允许这个操作，请刷新后查看',
  concurrent_change: '工单刚被别人改过，请刷新后再试',
  not_your_ticket: '这不是你的工单',
  ticket_not_found: '没有找到这张工单',
  location_unknown: '还不知道你的位置：请打开定位并上班，位置上报后才能看到附近的工单',
  not_on_duty: '你还没有上班：打开“上班”开关后再抢单',
  off_duty: '你还没有上班',
  off_shift: '现在不在你的排班时间内',
  not_a_technician: '这个账号不是维护人员',
  urged_recently: '刚刚催办过，请稍后再催',
  idempotency_key_reused: '这次提交与之前的一次冲突，请刷新后重新操作',
  // uploads
  too_large: '文件太大了：照片最大 10 MB，语音和视频最大 20 MB',
  body_too_large: '提交的内容太大了',
  unsupported_media_type: '只能上传照片、语音或视频',
  attachment_budget_exceeded: '这张工单的照片和文件已经满了',
  // sign-in and permissions
  bad_credentials: '用户名或密码不对',
  account_locked: '密码错误次数太多，账号已暂时锁定，请稍后再试',
  unauthorized: '登录已失效，请重新登录',
  forbidden: '没有权限做这个操作',
  not_found: '没有找到',
  // input and the service
  validation_error: '填写的内容有误',
  conflict: '操作冲突，请刷新后再试',
  rate_limited: '操作太频繁，请稍后再试',
  overloaded: '现在人太多，请稍后再试',
  service_unavailable: '服务暂时不可用，请稍后再试',
  geocoder_unavailable: '暂时无法识别地址，请在地图上点出位置',
  // made by the page
  network: '网络不通，请检查网络后重试',
  geolocation_denied: '定位被拒绝：请在手机设置里允许本页面使用位置，否则无法接单',
  geolocation_unavailable: '暂时无法定位：请到信号好的地方再试',
  geolocation_timeout: '定位超时：请到开阔处再试',
  geolocation_missing: '这台手机不能定位',
  phone_invalid: '请填写正确的手机号：11 位，以 1 开头，例如 13912345678',
  position_missing: '请先在地图上确认位置',
  too_many_photos: '照片最多 9 张',
  rating_missing: '请先选择星级',
};

// The fields the pages send, as their labels read (a validation problem names the field at fault).
const FIELDS = {
  'contact.phone': '手机号', 'contact.name': '联系人', phone: '手机号', description: '问题描述', address: '详细地址',
  location: '位置', 'location.lat': '位置', 'location.lng': '位置', note: '完工说明', reason: '退单原因',
  materials: '用料', file: '文件', password: '密码', username: '用户名', type_code: '故障类型', comment: '评价',
};

const FALLBACK = '操作没有成功，请稍后再试';

// The words for a code; the generic sentence (with the HTTP status, for a phone call to support) otherwise.
export function wordsFor(code, status) {
  return WORDS[code] || (status ? `${FALLBACK}（${status}）` : FALLBACK);
}

// A problem JSON as one sentence: the code's words, then which fields, by their labels.
export function describeProblem(status, problem) {
  const head = wordsFor(problem.code, status);
  const fields = [...new Set((problem.errors || []).map((e) => FIELDS[e.field] || FIELDS[String(e.field).split('.').pop()]))]
    .filter(Boolean);
  return fields.length ? `${head}：${fields.join('、')}` : head;
}

// An Error carrying a code of the table, for what the page itself finds wrong.
export class PageError extends Error {
  constructor(code, words = wordsFor(code)) {
    super(words);
    this.code = code;
  }
}

// The browser's GeolocationPositionError (English, per browser) as one of our codes.
export function geolocationError(error) {
  const code = { 1: 'geolocation_denied', 2: 'geolocation_unavailable', 3: 'geolocation_timeout' }[error?.code]
    || 'geolocation_unavailable';
  return new PageError(code);
}
