"""The desktop phone: the person at the computer is the callee, through the sound card.

``desktop`` is the phone itself (one call at a time over ``ivrsim.devices``: ringing, answer, hang-up,
keypad tones into the line), ``console`` what the person sees and types (``ivrsim phone``).
"""
