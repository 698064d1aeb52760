"""What tests/ and bench/ both need: synthetic scenarios, a sekmet-fhir launcher, a live-service runner, free ports.

Lives here, not in tests/, because nothing outside tests/ may import tests/.
"""
