-- Admit parked jobs while slots are free (after a pause ends, or a 429's slow-down expired).
-- ARGV: 1 the budget's cfg (budget.lua), 2 now ms. Returns how many were admitted.
return admit_next(cjson.decode(ARGV[1]), tonumber(ARGV[2]))
