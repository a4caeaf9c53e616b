/** Small DOM attachments used by the components (`{@attach ...}`). */
import type { Attachment } from 'svelte/attachments';

/** Plays one track in a <video>/<audio> element; re-attached when the track changes. */
export function playTrack(track: MediaStreamTrack | null): Attachment<HTMLMediaElement> {
  return (el) => {
    if (!track) {
      el.srcObject = null;
      return;
    }
    const current = el.srcObject instanceof MediaStream ? el.srcObject.getTracks()[0] : undefined;
    if (current !== track) el.srcObject = new MediaStream([track]);
    const tryPlay = () => void el.play().catch(() => undefined);
    tryPlay();
    el.addEventListener('loadedmetadata', tryPlay);
    return () => el.removeEventListener('loadedmetadata', tryPlay);
  };
}

/** Reports the element's rendered size (debounced by the receiver). */
export function observeSize(onSize: (width: number, height: number) => void): Attachment<HTMLElement> {
  return (el) => {
    const ro = new ResizeObserver((entries) => {
      const box = entries[entries.length - 1]?.contentRect;
      if (box) onSize(box.width, box.height);
    });
    ro.observe(el);
    return () => ro.disconnect();
  };
}
