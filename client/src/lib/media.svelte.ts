/**
 * Local capture: camera + microphone (preview in the lobby, the same tracks are sent in the call),
 * device lists (kept fresh on `devicechange`), and the screen share track.
 */
export type CaptureProblem = 'permission-denied' | 'no-camera' | 'no-microphone' | 'no-devices' | 'in-use' | 'other';

const CAMERA_KEY = 'sealed-meet.cameraId';
const MIC_KEY = 'sealed-meet.micId';

function stored(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}
function store(key: string, value: string | null): void {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    /* storage unavailable: fine */
  }
}

function errorName(err: unknown): string {
  return err instanceof DOMException || err instanceof Error ? err.name : '';
}

export class LocalMedia {
  cameras = $state.raw<MediaDeviceInfo[]>([]);
  microphones = $state.raw<MediaDeviceInfo[]>([]);
  cameraId = $state<string | null>(stored(CAMERA_KEY));
  micId = $state<string | null>(stored(MIC_KEY));

  cameraTrack = $state.raw<MediaStreamTrack | null>(null);
  micTrack = $state.raw<MediaStreamTrack | null>(null);
  screenTrack = $state.raw<MediaStreamTrack | null>(null);

  /** The user's choice in the UI; a muted mic keeps its track but sends nothing. */
  micEnabled = $state(true);
  cameraEnabled = $state(true);

  cameraProblem = $state<CaptureProblem | null>(null);
  micProblem = $state<CaptureProblem | null>(null);
  acquiring = $state(false);

  /** Camera-only stream for the self-view. */
  readonly previewStream = $derived(this.cameraTrack ? new MediaStream([this.cameraTrack]) : null);
  /** Device ids to show as selected: the user's choice, else the device the current track uses. */
  readonly activeCameraId = $derived(this.cameraId ?? this.cameraTrack?.getSettings().deviceId ?? '');
  readonly activeMicId = $derived(this.micId ?? this.micTrack?.getSettings().deviceId ?? '');
  readonly permissionDenied = $derived(this.cameraProblem === 'permission-denied' || this.micProblem === 'permission-denied');

  #onDeviceChange = (): void => {
    void this.refreshDevices();
  };
  #started = false;

  /** Ask for camera and mic (once per lobby), then list devices. */
  async start(): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      navigator.mediaDevices?.addEventListener('devicechange', this.#onDeviceChange);
    }
    await this.acquire();
  }

  async acquire(): Promise<void> {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.cameraProblem = this.micProblem = 'other';
      return;
    }
    this.acquiring = true;
    try {
      await Promise.all([this.#acquireMic(), this.cameraEnabled ? this.#acquireCamera() : Promise.resolve()]);
      await this.refreshDevices();
    } finally {
      this.acquiring = false;
    }
  }

  async refreshDevices(): Promise<void> {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    this.cameras = devices.filter((d) => d.kind === 'videoinput' && d.deviceId);
    this.microphones = devices.filter((d) => d.kind === 'audioinput' && d.deviceId);
    // A device that disappeared: fall back to the default one.
    if (this.cameraId && this.cameras.length && !this.cameras.some((d) => d.deviceId === this.cameraId)) this.cameraId = null;
    if (this.micId && this.microphones.length && !this.microphones.some((d) => d.deviceId === this.micId)) this.micId = null;
  }

  async selectCamera(deviceId: string): Promise<MediaStreamTrack | null> {
    this.cameraId = deviceId || null;
    store(CAMERA_KEY, this.cameraId);
    if (!this.cameraEnabled) return null;
    return this.#acquireCamera();
  }

  async selectMic(deviceId: string): Promise<MediaStreamTrack | null> {
    this.micId = deviceId || null;
    store(MIC_KEY, this.micId);
    return this.#acquireMic();
  }

  /** Turn the camera off: the track is stopped so the camera light goes out. */
  stopCamera(): void {
    this.cameraEnabled = false;
    this.cameraTrack?.stop();
    this.cameraTrack = null;
  }

  async startCamera(): Promise<MediaStreamTrack | null> {
    this.cameraEnabled = true;
    return this.#acquireCamera();
  }

  setMicEnabled(enabled: boolean): void {
    this.micEnabled = enabled;
    if (this.micTrack) this.micTrack.enabled = enabled;
  }

  async startScreen(): Promise<MediaStreamTrack | null> {
    if (this.screenTrack) return this.screenTrack;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    const track = stream.getVideoTracks()[0] ?? null;
    if (track) track.contentHint = 'detail';
    this.screenTrack = track;
    return track;
  }

  stopScreen(): void {
    this.screenTrack?.stop();
    this.screenTrack = null;
  }

  /** Stop everything (leaving the meeting page). */
  stopAll(): void {
    this.cameraTrack?.stop();
    this.micTrack?.stop();
    this.screenTrack?.stop();
    this.cameraTrack = this.micTrack = this.screenTrack = null;
    if (this.#started) navigator.mediaDevices?.removeEventListener('devicechange', this.#onDeviceChange);
    this.#started = false;
  }

  async #acquireCamera(): Promise<MediaStreamTrack | null> {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: {
          ...(this.cameraId ? { deviceId: { exact: this.cameraId } } : {}),
          width: { ideal: 1280 },
          height: { ideal: 720 },
          frameRate: { ideal: 30 },
        },
      });
      const track = stream.getVideoTracks()[0] ?? null;
      if (!this.cameraEnabled) {
        // Turned off while the camera was starting.
        track?.stop();
        return null;
      }
      this.cameraTrack?.stop();
      this.cameraTrack = track;
      this.cameraProblem = null;
      return track;
    } catch (err) {
      this.cameraProblem = classify(err, 'no-camera');
      return null;
    }
  }

  async #acquireMic(): Promise<MediaStreamTrack | null> {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          ...(this.micId ? { deviceId: { exact: this.micId } } : {}),
          echoCancellation: true,
          noiseSuppression: true,
          autoGainControl: true,
        },
      });
      const track = stream.getAudioTracks()[0] ?? null;
      if (track) track.enabled = this.micEnabled;
      this.micTrack?.stop();
      this.micTrack = track;
      this.micProblem = null;
      return track;
    } catch (err) {
      this.micProblem = classify(err, 'no-microphone');
      return null;
    }
  }
}

function classify(err: unknown, missing: CaptureProblem): CaptureProblem {
  switch (errorName(err)) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'permission-denied';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return missing;
    case 'NotReadableError':
    case 'AbortError':
      return 'in-use';
    default:
      return 'other';
  }
}
