-- Runs first in a fresh regression database (the cluster preloads pageperfect).
CREATE EXTENSION pageperfect;
