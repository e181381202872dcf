/**
 * The main page's optional script (the page works without it). It
 * - fills every hidden `timezone` field with the viewer's zone and shows it,
 * - sets the compose form's default time to five minutes ahead in that zone,
 *   and the reschedule pickers to each message's time in that zone,
 * - remembers the name typed last,
 * - prepends new posts from /v1/events (Server-Sent Events) to the feed and
 *   drops a delivered message from the scheduled list.
 * User text is only ever set with textContent. Runs after LOCAL_TIME_SCRIPT.
 */
export const MAIN_PAGE_SCRIPT = `
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const pad = (n) => String(n).padStart(2, '0');
  const pickerValue = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());

  for (const input of document.querySelectorAll('input[name="timezone"]')) input.value = zone;
  for (const el of document.querySelectorAll('.tz-name')) el.textContent = zone;
  const composeTime = document.querySelector('#compose input[name="time"][data-default]');
  if (composeTime) composeTime.value = pickerValue(new Date(Date.now() + 5 * 60 * 1000));
  for (const input of document.querySelectorAll('input[type="datetime-local"][data-instant]')) {
    const d = new Date(input.dataset.instant);
    if (!isNaN(d)) input.value = pickerValue(d);
  }

  const username = document.querySelector('#compose input[name="username"]');
  if (username) {
    try {
      if (!username.value) username.value = localStorage.getItem('psched.username') || '';
      document.getElementById('compose').addEventListener('submit', () => localStorage.setItem('psched.username', username.value));
    } catch (e) { /* storage blocked: nothing to remember */ }
  }

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
    document.getElementById('feed-empty')?.remove();
    if (post.messageId) {
      for (const item of document.querySelectorAll('#scheduled > li')) if (item.dataset.id === post.messageId) item.remove();
      const count = document.getElementById('scheduled-count');
      if (count) count.textContent = String(document.querySelectorAll('#scheduled > li').length);
    }
  };
  connect();
})();
`;
