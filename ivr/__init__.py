"""The Twilio edge: webhooks in, TwiML out. Thin: the flow lives in callflows/."""
