"""Training callbacks: schedules, curricula and run bookkeeping."""
