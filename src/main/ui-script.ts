/**
 * The main page's optional script (the page works without it). It
 * - fills every hidden `timezone` field with the viewer's zone and shows it,
 * - sets the compose form's default time to five minutes ahead in that zone,
 *   and the time pickers to each message's time in that zone (to the second),
 * - refuses a time already past before it is sent, unless "post now" is ticked
 *   (the server refuses it too: this only saves the round trip),
 * - counts the characters of every message field against the limit, as the
 *   server counts them (code points),
 * - asks before a cancel, naming the message,
 * - names every per-message control after its message in the viewer's time,
 * - remembers the name typed last,
 * - collapses long texts behind "Show more",
 * - prepends new posts from /v1/events (Server-Sent Events) to the feed and
 *   drops a delivered message from the scheduled list, keeping its count and
 *   empty state right.
 * User text is only ever set with textContent. Runs after LOCAL_TIME_SCRIPT.
 */
export const MAIN_PAGE_SCRIPT = `
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const pad = (n) => String(n).padStart(2, '0');
  const pickerValue = (d, seconds) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes())
    + (seconds && d.getSeconds() ? ':' + pad(d.getSeconds()) : '');
  const timeText = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  for (const input of document.querySelectorAll('input[name="timezone"]')) input.value = zone;
  for (const el of document.querySelectorAll('.tz-name')) el.textContent = zone;
  const composeTime = document.querySelector('#compose input[name="time"][data-default]');
  if (composeTime) composeTime.value = pickerValue(new Date(Date.now() + 5 * 60 * 1000), false);
  for (const input of document.querySelectorAll('input[type="datetime-local"][data-instant]')) {
    const d = new Date(input.dataset.instant);
    if (!isNaN(d)) input.value = pickerValue(d, true);
  }

  // a datetime-local value is wall-clock time in the viewer's zone, which is what Date reads it as
  const showError = (el, text) => { if (el) { el.textContent = text; el.hidden = !text; } };
  const refusePast = (event, input, errorEl) => {
    const at = new Date(input.value);
    if (isNaN(at) || at.getTime() >= Date.now()) { showError(errorEl, ''); input.removeAttribute('aria-invalid'); return; }
    event.preventDefault();
    input.setAttribute('aria-invalid', 'true');
    showError(errorEl, 'That time has already passed (it is now ' + timeText.format(new Date()) + '). Pick a later time'
      + (errorEl && errorEl.id === 'compose-time-error' ? ', or tick "Post now" to post it at once.' : '.'));
    input.focus();
  };

  const compose = document.getElementById('compose');
  const now = document.getElementById('compose-now');
  if (compose && now) {
    const time = document.getElementById('compose-time');
    const errorEl = document.getElementById('compose-time-error');
    const sync = () => { time.required = !now.checked; time.classList.toggle('ignored', now.checked); if (now.checked) showError(errorEl, ''); };
    now.addEventListener('change', sync);
    sync();
    time.addEventListener('input', () => showError(errorEl, ''));
    const repeat = document.getElementById('compose-repeat-kind');
    // a repeating message may start at a time already past: it fires from its next occurrence on
    compose.addEventListener('submit', (event) => { if (!now.checked && (!repeat || repeat.value === 'none')) refusePast(event, time, errorEl); });
    if (repeat) {
      // only the parts of the repeat choice that count are shown (all of them without a script)
      const days = document.getElementById('compose-days');
      const custom = document.getElementById('compose-custom');
      const showRepeat = () => { days.hidden = repeat.value !== 'weekly'; custom.hidden = repeat.value !== 'custom'; };
      repeat.addEventListener('change', showRepeat);
      showRepeat();
    }
  }
  for (const form of document.querySelectorAll('form.reschedule')) {
    form.addEventListener('submit', (event) => refusePast(event, form.querySelector('input[name="time"]'), form.closest('li').querySelector('.field-error')));
  }

  // the server counts code points, as [...text] does; a textarea's value has LF line breaks, as the server stores them
  const max = (el) => Number(el.dataset.max);
  for (const counter of document.querySelectorAll('.counter[data-max]')) {
    const field = counter.closest('form').querySelector('textarea[name="message"]');
    const update = () => {
      const length = [...field.value].length;
      const over = length - max(counter);
      counter.textContent = length.toLocaleString('en-US') + ' / ' + max(counter).toLocaleString('en-US') + (over > 0 ? ': ' + over.toLocaleString('en-US') + ' too many' : '');
      counter.classList.toggle('over', over > 0);
      if (over > 0) field.setAttribute('aria-invalid', 'true'); else field.removeAttribute('aria-invalid');
    };
    field.addEventListener('input', update);
    update();
    counter.closest('form').addEventListener('submit', (event) => {
      if ([...field.value].length <= max(counter)) return;
      event.preventDefault();
      field.focus();
    });
  }

  // each control's accessible name says which message, with its time as the page shows it
  const nameControls = (li) => {
    const chars = [...(li.querySelector('.text')?.textContent || '')];
    const preview = chars.length > 40 ? chars.slice(0, 40).join('') + '…' : chars.join('');
    const which = 'the message from ' + li.querySelector('.username').textContent + ' due ' + li.querySelector('.meta time').textContent + ': ' + preview;
    for (const el of li.querySelectorAll('[data-label]')) el.setAttribute('aria-label', el.dataset.label + ' ' + which);
  };
  for (const li of document.querySelectorAll('#scheduled > li')) nameControls(li);
  for (const form of document.querySelectorAll('form.cancel')) {
    form.addEventListener('submit', (event) => {
      const label = form.querySelector('button').getAttribute('aria-label');
      if (!confirm(label + '?\\n\\nIt will not be posted.')) event.preventDefault();
    });
  }

  const username = document.querySelector('#compose input[name="username"]');
  if (username) {
    try {
      if (!username.value) username.value = localStorage.getItem('psched.username') || '';
      compose.addEventListener('submit', () => localStorage.setItem('psched.username', username.value));
    } catch (e) { /* storage blocked: nothing to remember */ }
  }

  // long texts: six lines, then "Show more"; measured, so only texts that overflow get the button
  const collapse = (text) => {
    if (text.dataset.collapsible) return;
    text.dataset.collapsible = 'checked';
    text.classList.add('clamped');
    if (text.scrollHeight <= text.clientHeight + 1) { text.classList.remove('clamped'); return; }
    if (!text.id) text.id = 'text-' + Math.random().toString(36).slice(2);
    const more = document.createElement('button');
    more.type = 'button';
    more.className = 'link show-more';
    more.setAttribute('aria-controls', text.id);
    more.setAttribute('aria-expanded', 'false');
    more.textContent = 'Show more';
    more.addEventListener('click', () => {
      const open = text.classList.toggle('clamped') === false;
      more.setAttribute('aria-expanded', String(open));
      more.textContent = open ? 'Show less' : 'Show more';
    });
    text.after(more);
  };
  for (const text of document.querySelectorAll('#feed .text, #scheduled .text')) collapse(text);

  const count = document.getElementById('scheduled-count');
  const recount = () => {
    const shown = document.querySelectorAll('#scheduled > li').length;
    if (count) count.textContent = shown + (count.dataset.more === 'true' ? '+' : '');
    const empty = document.getElementById('scheduled-empty');
    if (empty) empty.hidden = shown > 0;
  };

  const feed = document.getElementById('feed');
  const live = document.getElementById('live');
  if (!feed || feed.dataset.live !== 'true' || !window.EventSource) return;
  const setLive = (on) => { if (live) { live.hidden = false; live.className = 'badge ' + (on ? 'delivered' : 'delivering'); live.textContent = on ? 'live' : 'reconnecting…'; } };
  const connect = () => {
    // the newest post the page shows: the stream starts after it, so nothing posted since is missed
    const newest = feed.querySelector('li.post');
    const source = new EventSource('/v1/events?after=' + (newest ? encodeURIComponent(newest.id.slice('post-'.length)) : 'none'));
    source.onopen = () => setLive(true);
    source.onerror = () => {
      setLive(false);
      // EventSource gives up for good on an answer other than 200 (a 503 when the server
      // holds its --max-event-streams): try again later, at a time of its own
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000 + Math.random() * 10000);
    };
    source.addEventListener('post', showPost);
  };
  const showPost = (event) => {
    const post = JSON.parse(event.data);
    if (document.getElementById('post-' + post.id)) return;
    const li = document.createElement('li');
    li.id = 'post-' + post.id;
    li.className = 'post new';
    const meta = document.createElement('div');
    meta.className = 'meta';
    const name = document.createElement('strong');
    name.className = 'username';
    name.textContent = post.username;
    const time = document.createElement('time');
    time.setAttribute('datetime', post.postedAt);
    time.textContent = post.postedAt;
    meta.append('Posted By ', name, ' at ', time);
    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = post.message;
    li.append(meta, text);
    feed.prepend(li);
    pschedLocalTimes(li);
    collapse(text);
    document.getElementById('feed-empty')?.remove();
    if (post.messageId) {
      for (const item of document.querySelectorAll('#scheduled > li')) if (item.dataset.id === post.messageId) item.remove();
      recount();
    }
  };
  connect();
})();
`;
