"""The FastAPI application: the Canary Voice API and /_sim, assembled in one place."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from ivrsim import __version__
from ivrsim.analysis.canonical import CanonicalService
from ivrsim.analysis.jobs import JobContext
from ivrsim.analysis.service import InProcessJobs, JobService
from ivrsim.analysis.transcripts import CallTranscripts
from ivrsim.api.deps import Services
from ivrsim.api.docs import install_docs
from ivrsim.api.errors import (
    BodyLimitMiddleware,
    BodyTimeoutMiddleware,
    JsonOnlyMiddleware,
    install_error_handlers,
)
from ivrsim.api.memory import IdleMemoryTrimmer
from ivrsim.api.routes import analyses, calls, canonical, canonical_upload, flows, sim, voices, webhooks, workers
from ivrsim.audio.line import LineSettings
from ivrsim.engine.callees import DeskPhone, Phonebook
from ivrsim.engine.clock import ManualTimeline
from ivrsim.engine.engine import CallEngine, EngineSettings
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.settings import Settings
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.speech.voices import VoiceCatalog
from ivrsim.store.maintenance import DataDirLock, Housekeeping
from ivrsim.ui import ui_router
from ivrsim.webhooks.dispatcher import WebhookDispatcher, WebhookSettings
from ivrsim.workers.hub import WorkerHub
from ivrsim.workers.local import LocalWorkers, LocalWorkerSpec
from ivrsim.workers.protocol import WorkerConfig
from ivrsim.workers.queue import embedded_queue_url

if TYPE_CHECKING:
    from ivrsim.phone.desktop import PhoneSettings

#: How long shutdown waits for webhook deliveries in flight, in seconds.
SHUTDOWN_DRAIN_S = 5.0


def public_url(app: FastAPI, settings: Settings) -> str | None:
    """The base URL receivers should use: IVRSIM_PUBLIC_URL, else the address the server bound (set on
    ``app.state.bound_url`` by ``ivrsim.api.server`` before the lifespan starts)."""
    url = settings.public_url or getattr(app.state, "bound_url", None)
    return url.rstrip("/") if url else None


def create_app(settings: Settings, data_lock: DataDirLock | None = None) -> FastAPI:
    """The app for ``settings`` (whose ``api_key`` must be set); engine and webhooks start with it.

    ``data_lock``: the data folder's lock, already taken by whoever runs the app (``ivrsim.api.server``
    takes it before uvicorn starts, so a held folder is one clean error, not a traceback from the
    lifespan). Without one, the lifespan takes it. Either way the lifespan releases it when it ends, and
    when its own start-up (engine, crash recovery) fails."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = data_lock or DataDirLock(settings.data_dir)
        if data_lock is None:  # one server per data folder, taken before crash recovery touches the calls
            lock.acquire(listen=public_url(app, settings) or f"{settings.host}:{settings.port}")
        try:
            async with _services(app, settings):
                yield
        finally:
            lock.release()

    app = FastAPI(
        title="ivrsim",
        version=__version__,
        summary="The Canary Voice API on localhost, with real audio, and the /_sim control surface.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own files by install_docs: they work offline
        redoc_url=None,
    )
    install_error_handlers(app)
    canonical.install_canonical_errors(app)
    install_docs(app)
    # The last added runs first: size limit, then the body deadline, then the content type.
    # Upload parts (pre-signed PUTs) are raw bytes under their own cap and deadline (routes/canonical_upload.py).
    parts = (canonical_upload.PARTS_PREFIX,)
    app.add_middleware(JsonOnlyMiddleware, exempt_prefixes=(*parts, "/ui/"))  # the dashboard posts HTML forms
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s, slow_prefixes=parts, slow_timeout_s=settings.upload_part_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, exempt_prefixes=parts,
                       larger=((canonical.RETELL_PATH, settings.retell_max_body_bytes, "IVRSIM_RETELL_MAX_BODY_BYTES"),))
    for router in (calls.router, calls.public, voices.router, sim.router, webhooks.router, workers.router, analyses.router, canonical.router):
        app.include_router(router)
    app.include_router(flows.router)
    app.include_router(canonical_upload.router)
    app.include_router(ui_router)  # the dashboard: /ui (session cookie) and / -> /ui
    app.state.closing = asyncio.Event()  # set when shutdown starts: the dashboard's open event streams end
    return app


def _phone_settings(settings: Settings) -> PhoneSettings | None:
    """The desktop phone of ``--answer soundcard``: this machine's sound card (IVRSIM_INPUT_DEVICE and
    IVRSIM_OUTPUT_DEVICE choose it), picking up by itself after ``auto_answer_rings``; None otherwise."""
    if settings.answer != "soundcard":
        return None
    from ivrsim.devices.soundcard import SoundCardSettings
    from ivrsim.phone.desktop import PhoneSettings

    return PhoneSettings(SoundCardSettings.from_environment(), auto_answer_rings=settings.auto_answer_rings)


def _desk_phone(settings: Settings) -> DeskPhone | None:
    phone = _phone_settings(settings)
    if phone is None:
        return None
    from ivrsim.phone.desktop import DesktopPhone

    return DesktopPhone(phone)


async def _worker_hub(app: FastAPI, settings: Settings, engine_settings: EngineSettings, media: MediaSettings,
                      timeline: ManualTimeline | None, phonebook: Phonebook) -> WorkerHub:
    """The executor of worker mode: the queue (the embedded one unless ``settings.queue``), where workers
    reach this server, and the lanes: calls to the sound card's number go to the ``phone`` lane, which
    only the process that owns the device takes (the first local worker, or `ivrsim worker --lane phone`)."""
    api_url = public_url(app, settings)
    if api_url is None:
        raise RuntimeError("worker mode needs the server's URL: serve the app with ivrsim.api.server, or set IVRSIM_PUBLIC_URL")
    config = WorkerConfig.of(engine_settings, settings.phonebook, media)
    hub = WorkerHub(settings.queue or embedded_queue_url(settings.data_dir), config, api_url, engine_settings.recordings_folder, timeline,
                    unclaimed_after_s=settings.unclaimed_requeue_s)
    if settings.queue is None:  # the embedded queue is this folder's own: recovery ends its calls and queues its jobs again
        for queue in hub.queues.values():
            await asyncio.to_thread(queue.flush)
    return hub


@asynccontextmanager
async def _services(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Engine, webhook dispatcher and housekeeping for the app's life; what start-up built is closed again
    when a later step of it fails."""
    catalog = VoiceCatalog.load()
    phonebook = Phonebook.load(settings.phonebook, catalog) if settings.phonebook else Phonebook.default_book(catalog)
    engine_settings = EngineSettings(settings.data_dir, clock=settings.clock, line=LineSettings(), seed=settings.seed,
                                     public_url=public_url(app, settings), twilio_auth_token=settings.twilio_auth_token)
    media = MediaSettings(
        allowed_roots=tuple(settings.media_roots),
        cache_dir=settings.data_dir / "media",
        cache_max_bytes=settings.media_cache_max_bytes,
        fetch_deadline_s=settings.media_deadline_s,
        per_host_workers=settings.media_workers_per_host,
        max_queue_wait_s=settings.media_queue_wait_s,
    )
    timeline = ManualTimeline() if settings.clock == "manual" else None
    hub = None if settings.in_process else await _worker_hub(app, settings, engine_settings, media, timeline, phonebook)
    loader = AudioUrlLoader(media)
    speech = SpeechEngines.from_environment()  # models load on first use, once per process (--workers 0 only)
    engine = CallEngine(
        engine_settings,
        phonebook=phonebook,
        synthesizer=SpeechSynthesizer(
            catalog=catalog, cache=PromptCache(settings.data_dir / "prompts", disk_max_bytes=settings.prompt_cache_max_bytes)
        ),
        loader=loader,
        executor=hub,
        timeline=timeline,
        speech=speech,
        phone=_desk_phone(settings) if settings.in_process else None,  # else the first local worker owns the sound card
        soundcard_answers_all=settings.answer == "soundcard",
    )
    in_process_jobs = InProcessJobs(JobContext(loader, engine_settings.recordings_folder, speech))
    jobs = JobService(engine.store, hub if hub is not None else in_process_jobs, seed=settings.seed)
    transcripts = CallTranscripts(engine, jobs)
    local: LocalWorkers | None = None

    async def stop_calls() -> None:
        """End the live calls while the workers' sessions are still open (the server calls it before it
        closes connections), then stop the local workers."""
        await engine.close()
        await jobs.executor.close_jobs()
        if local is not None:
            await local.stop()

    app.state.before_shutdown = stop_calls
    dispatcher: WebhookDispatcher | None = None
    housekeeping: Housekeeping | None = None
    trimmer: IdleMemoryTrimmer | None = None
    try:
        dispatcher = WebhookDispatcher(
            engine.store,
            WebhookSettings(
                attempts=settings.webhook_attempts,
                connect_timeout_s=settings.webhook_connect_timeout_s,
                timeout_s=settings.webhook_timeout_s,
                backoff_s=settings.webhook_backoff_s,
                backoff_factor=settings.webhook_backoff_factor,
                backoff_cap_s=settings.webhook_backoff_cap_s,
                jitter=settings.webhook_jitter,
                secret=settings.webhook_secret,
            ),
        )
        engine.bus.subscribe(dispatcher.on_event)
        canonical_calls = CanonicalService(engine.store, jobs, dispatcher)  # listens to jobs before any is recovered
        engine.recover()  # after the subscription: receivers hear how the calls a crash left live ended
        jobs.recover()
        canonical_calls.recover()
        transcripts.recover()
        await dispatcher.start()
        deliveries = dispatcher
        trimmer = IdleMemoryTrimmer(busy=lambda: engine.live_count > 0 or deliveries.active_calls > 0)
        engine.bus.subscribe(trimmer.on_event)
        trimmer.start()
        housekeeping = await Housekeeping.start(settings.data_dir, engine.store, settings.retain_days, settings.retention_interval_s,
                                                idempotency_ttl_s=settings.idempotency_ttl_s)
        app.state.services = Services(settings=settings, engine=engine, dispatcher=dispatcher, catalog=catalog, jobs=jobs, speech=speech,
                                      canonical=canonical_calls)
        if hub is not None and settings.local_workers:
            local = LocalWorkers(settings.local_workers, LocalWorkerSpec(
                hub.queue.url, getattr(app.state, "bound_url", None) or hub.api_url, hub.token, hub.recordings_dir.resolve(), (settings.data_dir / "workers").resolve(),
                (settings.data_dir / "prompts").resolve(),
                settings.worker_max_calls,
                phone=_phone_settings(settings),
            ))
            await local.start()
            app.state.local_workers = local
        # What start-up built lives as long as the server: move it out of the collector's way, so that a
        # full collection scans only what requests made (tens of ms less at p99).
        gc.collect()
        gc.freeze()
        yield
    finally:
        if trimmer is not None:
            await trimmer.stop()
        if housekeeping is not None:
            await housekeeping.stop()
        await stop_calls()
        engine.synthesizer.close()  # its own waiting threads (the engine closes only the media loader)
        if dispatcher is not None:
            await dispatcher.settle(SHUTDOWN_DRAIN_S)  # what still retries stays pending and resumes at the next start
            await dispatcher.close()
        engine.store.close()
