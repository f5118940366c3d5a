"""Real TwiML apps, offline: a call whose ``url`` names the user's web app runs the TwiML it answers
(``runtime.twiml_dialogue``), as Twilio would run it (``document`` parses it, ``params`` signs the requests)."""
