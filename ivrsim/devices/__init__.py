"""The sound card: the one place PortAudio (through ``sounddevice``) is touched.

``catalog`` lists and chooses devices, ``ring`` is the lock-free buffer between PortAudio's callback thread
and the call, ``soundcard`` is duplex audio at the call's rate (resampled to and from the device's rate)
and ``DeviceClock``, which paces a call by the card's input instead of by ``asyncio.sleep``. PortAudio is
imported lazily, so the rest of ivrsim works on a machine without ``libportaudio2``.
"""
