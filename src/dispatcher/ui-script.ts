/**
 * The dispatcher pages' optional script (they work without it). It
 * - fills every hidden `timeZone` field with the viewer's zone and shows it,
 *   and sets the edit form's time picker to the message's time in that zone,
 * - takes the one-off notice out of the address bar (a reload does not show it again),
 * - refreshes every element marked data-live every few seconds (and at once
 *   when the tab comes back): it fetches the same page and swaps those
 *   elements for their new versions, keeping ticked checkboxes ticked and
 *   highlighting items that were not there before; it skips an element while
 *   the viewer is typing in it or has a <details> in it open. Polling, not a
 *   stream of this process's events: in a pool on PostgreSQL the page shows
 *   what every dispatcher did, and a page left open holds no connection,
 * - offers "All on this page" for the dead letters and the expired messages
 *   (each form.bulk), and asks before a cancel, a discard or a bulk action,
 *   saying how many,
 * - counts the characters of the edit form's text as the server does (code points).
 * User text is never parsed as markup: the swapped elements come from the
 * server's own escaped page. Runs after LOCAL_TIME_SCRIPT.
 */
export const CONSOLE_SCRIPT = `
(function () {
  const REFRESH_MS = 5000;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const pad = (n) => String(n).padStart(2, '0');
  const pickerValue = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes())
    + (d.getSeconds() ? ':' + pad(d.getSeconds()) : '');

  for (const input of document.querySelectorAll('input[type="hidden"][name="timeZone"]')) input.value = zone;
  for (const el of document.querySelectorAll('.tz-name')) el.textContent = zone;
  for (const input of document.querySelectorAll('input[type="datetime-local"][data-instant]')) {
    const d = new Date(input.dataset.instant);
    if (!isNaN(d)) input.value = pickerValue(d);
  }

  const url = new URL(location.href);
  for (const name of ['notice', 'status', 'list', 'done', 'skipped', 'at']) url.searchParams.delete(name);
  if (url.href !== location.href) history.replaceState(null, '', url.href);

  const confirmSubmit = (form, question) => form.addEventListener('submit', (event) => {
    const text = typeof question === 'function' ? question(event) : question;
    if (text && !confirm(text)) event.preventDefault();
  });

  // everything inside a live element is set up again after each swap
  const enhance = (root) => {
    for (const form of root.querySelectorAll('form[action$="/cancel"], form[action$="/discard"]')) {
      const label = form.querySelector('button').getAttribute('aria-label') || 'Go ahead';
      confirmSubmit(form, label + '?');
    }
    for (const bulk of root.querySelectorAll('form.bulk')) {
      // not bulk.id: the form's controls named "id" (its ticked boxes) shadow that property
      const picks = () => [...document.querySelectorAll('input.pick[form="' + bulk.getAttribute('id') + '"]')];
      const all = bulk.querySelector('.select-all input');
      bulk.querySelector('.select-all').hidden = false;
      all.addEventListener('change', () => { for (const box of picks()) box.checked = all.checked; });
      confirmSubmit(bulk, (event) => {
        const n = picks().filter((box) => box.checked).length;
        if (n === 0) return '';
        const discard = event.submitter && event.submitter.classList.contains('bulk-discard');
        return (discard ? 'Discard ' : 'Retry ') + n + ' ' + (n === 1 ? bulk.dataset.one : bulk.dataset.many) + '?' + (discard ? '\\n\\nThey will not be delivered.' : '');
      });
    }
  };
  enhance(document);

  for (const counter of document.querySelectorAll('.counter[data-max]')) {
    const field = counter.closest('form').querySelector('textarea');
    const max = Number(counter.dataset.max);
    const update = () => {
      const length = [...field.value].length;
      counter.textContent = length.toLocaleString('en-US') + ' / ' + max.toLocaleString('en-US') + (length > max ? ': ' + (length - max).toLocaleString('en-US') + ' too many' : '');
      counter.classList.toggle('over', length > max);
    };
    field.addEventListener('input', update);
    update();
  }

  const live = document.getElementById('live');
  const setLive = (on) => { if (live) { live.hidden = false; live.className = 'badge ' + (on ? 'delivered' : 'delivering'); live.textContent = on ? 'live' : 'reconnecting…'; } };
  const busy = (el) => {
    const active = document.activeElement;
    if (active && el.contains(active) && (active.tagName === 'TEXTAREA' || active.tagName === 'SELECT' || (active.tagName === 'INPUT' && active.type !== 'checkbox'))) return true;
    return el.querySelector('details[open]') !== null;
  };
  let running = false;
  const refresh = async () => {
    if (running || document.hidden) return;
    running = true;
    try {
      const answer = await fetch(url.href, { headers: { accept: 'text/html' }, credentials: 'same-origin', cache: 'no-store' });
      if (!answer.ok) throw new Error('HTTP ' + answer.status);
      const fresh = new DOMParser().parseFromString(await answer.text(), 'text/html');
      for (const el of [...document.querySelectorAll('[data-live][id]')]) {
        const next = fresh.getElementById(el.id);
        if (!next || busy(el)) continue;
        const ticked = new Set([...document.querySelectorAll('input.pick:checked')].map((box) => box.value));
        const known = new Set([...el.querySelectorAll('li[data-id]')].map((li) => li.dataset.id));
        const focused = document.activeElement && el.contains(document.activeElement) && document.activeElement.value;
        for (const box of next.querySelectorAll('input.pick')) box.checked = ticked.has(box.value);
        for (const li of next.querySelectorAll('li[data-id]')) if (!known.has(li.dataset.id)) li.classList.add('new');
        const liveBadge = next.querySelector('#live');
        if (liveBadge && live) liveBadge.replaceWith(live);
        const adopted = document.importNode(next, true);
        el.replaceWith(adopted);
        pschedLocalTimes(adopted);
        enhance(adopted);
        const all = adopted.querySelector('.select-all input');
        if (all) all.checked = [...adopted.querySelectorAll('input.pick')].every((box) => box.checked) && ticked.size > 0;
        if (focused) adopted.querySelector('input.pick[value="' + CSS.escape(focused) + '"]')?.focus();
      }
      setLive(true);
    } catch (err) {
      setLive(false);
    } finally {
      running = false;
    }
  };
  if (document.querySelector('[data-live]')) {
    setLive(true);
    setInterval(refresh, REFRESH_MS);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  }
})();
`;
